package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/nixos-via/nixos-via/images/elfdeps"
	"github.com/nixos-via/nixos-via/internal/event"
)

// MaxInstallerBytes is the size budget of the installer tarball (40 MiB).
const MaxInstallerBytes = 40 << 20

// InstallerOptions configure the kexec installer tarball.
type InstallerOptions struct {
	// Kernel to boot; zero means HostKernel("").
	Kernel Kernel
	// Agent is a static nixos-via binary installed as /usr/bin/nixos-via.
	// Empty means the running executable, which must then be static.
	Agent string
	// HostKeys are baked into the installer for boots without restored
	// keys; with none, keys are generated at boot. Keys restored by run
	// always replace them.
	HostKeys []HostKey
	// AuthorizedKeys are root's keys baked in (run adds the old host's).
	AuthorizedKeys []string
	// SSHHostKeyTypes are the host key types the installer's sshd offers
	// (its HostKey lines), of the keys it restores or has; missing ones are
	// generated at boot. Nil means rsa and ed25519, as NixOS's default
	// services.openssh.hostKeys: a restored ecdsa key is kept in /etc/ssh
	// but not offered, as in the real installer.
	SSHHostKeyTypes []string
	// SharedMounts makes every mount of the installer shared early in its
	// init (mount --make-rshared /), as systemd, PID 1 of a real NixOS
	// installer, does: a mount or unmount under a bind of it then
	// propagates back (a chroot's `umount -R` would take /dev, /proc and
	// /sys of the installer with it). Without it mounts stay private, as
	// with busybox init.
	SharedMounts bool
	// Cmdline is appended to the installer's kernel command line.
	Cmdline string
	// Compression of the initrd; "" means zstd.
	Compression Compression
	// Events receives progress; nil discards.
	Events event.Sink
	// TestFixtures are extra executables for tests only (absolute path in
	// the installer -> file content): vmtests/testimg puts stand-ins there
	// for tools a real NixOS installer has and this one lacks (such as
	// nixos-generate-config). A real installer needs none.
	TestFixtures map[string]string
}

// Installer is a built installer tarball.
type Installer struct {
	Path        string
	Bytes       int64 // tarball size
	InitrdBytes int64 // compressed initrd size
	KernelBytes int64
	Cmdline     string
}

// nixosHostKeyTypes are the host key types of NixOS's default
// services.openssh.hostKeys.
var nixosHostKeyTypes = []string{"rsa", "ed25519"}

// installerPrograms are the Debian programs of the installer, copied with
// their libraries. Missing optional ones are skipped.
func installerPrograms() (required, optional []string) {
	required = []string{
		"/usr/sbin/sshd", "/usr/lib/openssh/sftp-server", "/usr/bin/ssh-keygen",
		"/usr/bin/ip",
		"/usr/sbin/sgdisk", "/usr/sbin/parted", "/usr/sbin/partprobe",
		"/usr/sbin/blkid", "/usr/bin/lsblk", "/usr/sbin/wipefs", "/usr/bin/partx", "/usr/bin/findmnt",
		"/usr/bin/mount", "/usr/bin/umount", "/usr/sbin/losetup", "/usr/sbin/blockdev",
		"/usr/sbin/mkswap", "/usr/sbin/swapon", "/usr/sbin/swapoff",
		"/usr/sbin/cryptsetup", "/usr/sbin/lvm", "/usr/sbin/dmsetup", "/usr/sbin/mdadm",
		"/usr/sbin/mke2fs", "/usr/sbin/e2fsck", "/usr/sbin/tune2fs", "/usr/sbin/resize2fs",
		"/usr/sbin/mkfs.fat", "/usr/sbin/fsck.fat",
		"/usr/sbin/mkfs.btrfs", "/usr/bin/btrfs",
		"/usr/sbin/mkfs.xfs",
		"/usr/bin/kmod", "/usr/bin/zstd",
	}
	optional = []string{"/usr/sbin/sfdisk", "/usr/sbin/fdisk", "/usr/sbin/xfs_repair"}
	return required, optional
}

// installerLinks are name -> target symlinks (tools with several names).
func installerLinks() map[string]string {
	links := map[string]string{
		"/usr/sbin/mkfs.ext4": "mke2fs", "/usr/sbin/mkfs.ext3": "mke2fs", "/usr/sbin/mkfs.ext2": "mke2fs",
		"/usr/sbin/fsck.ext4": "e2fsck", "/usr/sbin/fsck.ext3": "e2fsck", "/usr/sbin/fsck.ext2": "e2fsck",
		"/usr/sbin/mkfs.vfat": "mkfs.fat", "/usr/sbin/mkfs.msdos": "mkfs.fat", "/usr/sbin/mkdosfs": "mkfs.fat",
		"/usr/sbin/fsck.vfat": "fsck.fat",
	}
	for _, n := range []string{"modprobe", "insmod", "rmmod", "lsmod", "depmod", "modinfo"} {
		links["/usr/sbin/"+n] = "/usr/bin/kmod"
	}
	for _, n := range []string{"pvcreate", "pvremove", "pvs", "pvscan", "pvdisplay", "pvchange", "pvresize",
		"vgcreate", "vgremove", "vgs", "vgscan", "vgchange", "vgdisplay", "vgextend", "vgexport", "vgimport",
		"lvcreate", "lvremove", "lvs", "lvscan", "lvchange", "lvdisplay", "lvextend", "lvresize", "lvconvert"} {
		links["/usr/sbin/"+n] = "lvm"
	}
	return links
}

// installerModules are copied (with dependencies); the kernel loads them
// on demand through kmod's modprobe. bootModules are loaded at boot.
func installerModules() (all, boot []string) {
	boot = []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtio_scsi", "virtio_console",
		"nvme", "ahci", "sd_mod", "dm_mod", "dm_crypt"}
	all = append(append([]string{}, boot...),
		"dm_raid", "dm_snapshot", "dm_thin_pool", "dm_mirror", "dm_zero", "dm_integrity",
		"md_mod", "raid0", "raid1", "raid10", "raid456", "linear",
		"btrfs", "xfs", "vfat", "nls_cp437", "nls_iso8859_1", "nls_ascii", "efivarfs",
		"xts", "ecb", "cbc", "af_alg", "algif_skcipher", "aesni_intel", "loop")
	return all, boot
}

const installerLVMConf = `devices {
	use_devicesfile = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
`

// rcRestore restores what kexec/run appended: host keys, authorized keys,
// machine-id, then the network (static addresses and routes matched by MAC
// address, then DHCP on every interface).
const rcRestore = `if ls /ssh/ssh_host_*_key >/dev/null 2>&1; then
	rm -f /etc/ssh/ssh_host_*
	cp /ssh/ssh_host_* /etc/ssh/
	chmod 600 /etc/ssh/ssh_host_*_key
	echo "[init] restored host keys: $(cd /etc/ssh && ls ssh_host_*_key | tr '\n' ' ')"
fi
if [ -s /ssh/authorized_keys ]; then
	cat /ssh/authorized_keys >> /root/.ssh/authorized_keys
	echo "[init] restored $(wc -l < /ssh/authorized_keys) authorized keys"
fi
chmod 700 /root/.ssh
chmod 600 /root/.ssh/authorized_keys 2>/dev/null
if [ -s /machine-id ]; then
	cp /machine-id /etc/machine-id
fi
[ -s /network/resolv.conf ] && cp /network/resolv.conf /etc/resolv.conf
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	[ -n "$(ls /sys/class/net | grep -v '^lo$')" ] && break
	sleep 0.1
done
ifname_for_mac() {
	for d in /sys/class/net/*; do
		if [ "$(cat "$d/address" 2>/dev/null)" = "$1" ]; then
			basename "$d"
			return 0
		fi
	done
	return 1
}
if [ -s /network/static ]; then
	while read -r kind mac fam rest; do
		dev=$(ifname_for_mac "$mac") || { echo "[init] restore: no interface has MAC $mac"; continue; }
		ip link set "$dev" up
		case "$kind" in
		addr) ip "$fam" addr add $rest dev "$dev" && echo "[init] restored address $rest on $dev" ;;
		route) ip "$fam" route replace $rest dev "$dev" && echo "[init] restored route $rest on $dev" ;;
		esac || echo "[init] restore $kind $rest on $dev failed"
	done < /network/static
fi
`

// rcSharedMounts makes the mounts rcHead made (and every later one)
// shared, as systemd does at boot.
const rcSharedMounts = `mount --make-rshared / && echo "[init] mounts are shared" || echo "[init] mount --make-rshared / failed"
`

// runScript is kexec/run (DESIGN.md section 4). @CMDLINE@ is replaced.
const runScript = `#!/bin/sh
# kexec/run: boot this installer with kexec, keeping the machine's SSH
# host keys, authorized keys, network setup, machine-id and DNS servers.
# Usage: run [--kexec-extra-flags FLAGS]
set -eu
# Only the shell and its builtins come from the host: every other
# program is the tarball's own busybox, ip and kexec.
case "$0" in
*/*) here=${0%/*} ;;
*) here=. ;;
esac
here=$(cd "$here" && pwd -P)
BB="$here/busybox"
IP="$here/ip"
KEXEC="$here/kexec"
extra=""
while [ $# -gt 0 ]; do
	case "$1" in
	--kexec-extra-flags) [ $# -ge 2 ] || { echo "run: --kexec-extra-flags needs a value" >&2; exit 2; }; extra="$2"; shift 2 ;;
	--kexec-extra-flags=*) extra="${1#*=}"; shift ;;
	*) echo "run: unknown argument: $1" >&2; exit 2 ;;
	esac
done
if [ "$("$BB" id -u)" != 0 ]; then
	echo "run: must run as root (use sudo)" >&2
	exit 1
fi
work=$("$BB" mktemp -d "$here/state.XXXXXX")
trap '"$BB" rm -rf "$work" "$work.cpio"' EXIT
"$BB" mkdir -p "$work/ssh" "$work/network"

# Authorized keys: root's, the sudo/doas user's, and NixOS-style files.
# Option prefixes (command="..." etc.) are stripped.
keys() {
	[ -r "$1" ] || return 0
	"$BB" grep -oE '(sk-|ssh-|ecdsa-)[A-Za-z0-9@.-]+ AAAA[A-Za-z0-9+/=]+( .*)?$' "$1" >> "$work/ssh/authorized_keys" || true
}
keys /root/.ssh/authorized_keys
keys /root/.ssh/authorized_keys2
[ -r /etc/ssh/authorized_keys.d/root ] && "$BB" cat /etc/ssh/authorized_keys.d/root >> "$work/ssh/authorized_keys"
user="${DOAS_USER:-${SUDO_USER:-}}"
if [ -n "$user" ] && [ "$user" != root ]; then
	home=$("$BB" awk -F: -v u="$user" '$1 == u { print $6; exit }' /etc/passwd)
	# A user from NSS (LDAP, sssd, homed) is not in /etc/passwd: the
	# host's shell looks the home up (~user), for a plain user name only.
	if [ -z "$home" ] && [ -z "$(printf '%s' "$user" | "$BB" tr -d 'A-Za-z0-9._-')" ]; then
		eval "home=~$user"
		case "$home" in "~"*) home= ;; esac
	fi
	if [ -n "$home" ]; then
		keys "$home/.ssh/authorized_keys"
		keys "$home/.ssh/authorized_keys2"
	fi
	[ -r "/etc/ssh/authorized_keys.d/$user" ] && "$BB" cat "/etc/ssh/authorized_keys.d/$user" >> "$work/ssh/authorized_keys"
fi

# Every host key, so that the installer answers with the same identity.
for f in /etc/ssh/ssh_host_*; do
	[ -e "$f" ] && "$BB" cp "$f" "$work/ssh/"
done

# Network: the JSON views at the archive's top, where the nixos-images
# installer reads them too, and the static addresses/routes by MAC
# address in a form this installer's init replays.
"$IP" --json addr > "$work/addrs.json"
"$IP" -4 --json route > "$work/routes-v4.json"
# IPv6 may be disabled on the host; that must not stop the kexec.
"$IP" -6 --json route > "$work/routes-v6.json" 2>/dev/null || echo '[]' > "$work/routes-v6.json"
"$IP" -o link show | "$BB" awk '{ n = $2; sub(/:$/, "", n); sub(/@.*/, "", n); for (i = 3; i < NF; i++) if ($i == "link/ether") print n, $(i + 1) }' > "$work/network/macs"
"$IP" -o addr show scope global | "$BB" awk -v macs="$work/network/macs" '
	BEGIN { while ((getline l < macs) > 0) { split(l, a, " "); mac[a[1]] = a[2] } }
	/ dynamic/ { next }
	{ if (!($2 in mac)) next; fam = ($3 == "inet6") ? "-6" : "-4"; print "addr", mac[$2], fam, $4 }' > "$work/network/static"
for fam in -4 -6; do
	{ "$IP" "$fam" route show 2>/dev/null || true; } | "$BB" awk -v fam="$fam" -v macs="$work/network/macs" '
		BEGIN { while ((getline l < macs) > 0) { split(l, a, " "); mac[a[1]] = a[2] } }
		/ proto (kernel|dhcp|ra)( |$)/ { next }
		{
			dev = ""; out = ""
			for (i = 1; i <= NF; i++) {
				if ($i == "dev") { dev = $(i + 1); i++; continue }
				if ($i == "expires") { i++; continue }
				if ($i == "linkdown") continue
				out = out (out == "" ? "" : " ") $i
			}
			if (dev == "" || !(dev in mac)) next
			print "route", mac[dev], fam, out
		}' >> "$work/network/static"
done
resolv=/etc/resolv.conf
if "$BB" grep -q '^nameserver 127\.0\.0\.53' "$resolv" 2>/dev/null && [ -r /run/systemd/resolve/resolv.conf ]; then
	resolv=/run/systemd/resolve/resolv.conf
fi
"$BB" grep -E '^(nameserver|search|domain|options)[[:space:]]' "$resolv" > "$work/network/resolv.conf" 2>/dev/null || true
[ -r /etc/machine-id ] && "$BB" cp /etc/machine-id "$work/machine-id"

# Append it all to the initrd as one more newc archive; the kernel
# unpacks concatenated archives in order.
# The archive goes through a file: without pipefail (dash) a failing cpio
# would append an empty gzip member and the installer would boot without
# the keys.
(cd "$work" && "$BB" find . -mindepth 1 | "$BB" cpio -o -H newc) > "$work.cpio"
[ -s "$work.cpio" ] || { echo "run: could not pack the host's keys and network" >&2; "$BB" rm -f "$work.cpio"; exit 1; }
"$BB" gzip -9 < "$work.cpio" >> "$here/initrd"
"$BB" rm -f "$work.cpio"

# kexec_file_load first (falling back to kexec_load) from Linux 6.1 on,
# the legacy call only before, as the nixos-images run does.
syscall=""
case "$("$BB" uname -r)" in
[0-5].*|6.0|6.0[.-]*) ;;
*) syscall="--kexec-syscall-auto" ;;
esac
# shellcheck disable=SC2086 # extra flags are split on purpose
if ! "$KEXEC" --load "$here/bzImage" $syscall $extra --initrd="$here/initrd" --no-checks --command-line="@CMDLINE@"; then
	echo "run: kexec --load failed; last kernel messages:" >&2
	"$BB" dmesg | "$BB" tail -n 100 >&2
	exit 1
fi
echo "machine will boot into nixos in 6s..."
# Detach from the caller's session so its SSH connection can close.
"$BB" setsid "$BB" sh -c "'$BB' sleep 6; exec '$KEXEC' -e $extra" </dev/null >/dev/null 2>&1 &
`

// wrapperScript runs a bundled dynamic program through the bundled loader.
const wrapperScript = `#!/bin/sh
case "$0" in */*) d=${0%/*} ;; *) d=. ;; esac
d=$(cd "$d" && pwd -P)
exec "$d/lib/@LOADER@" --library-path "$d/lib" "$d/libexec/@NAME@" "$@"
`

// BuildInstaller writes the installer tarball to out (a .tar.gz):
// kexec/bzImage, kexec/initrd, kexec/run and the helpers kexec/kexec,
// kexec/ip and kexec/busybox (dynamic helpers run through their bundled
// loader and libraries in kexec/lib, so they work on any x86_64 Linux).
func BuildInstaller(ctx context.Context, out string, opts InstallerOptions) (*Installer, error) {
	sink := opts.Events
	if sink == nil {
		sink = event.Discard{}
	}
	in, err := resolveInstaller(out, opts)
	if err != nil {
		return nil, fmt.Errorf("installer image: %w", err)
	}
	sink.Emit(event.Event{Phase: "image", Kind: event.Step, Msg: "building installer initrd with kernel " + in.kernel.Version})
	b, err := newBuilder(in.kernel)
	if err != nil {
		return nil, fmt.Errorf("installer image: %w", err)
	}
	if err := b.installerSystem(ctx, in.agent, opts); err != nil {
		return nil, fmt.Errorf("installer image: %w", err)
	}
	inst, err := b.installerTarball(out, in)
	if err != nil {
		return inst, fmt.Errorf("installer image: %w", err)
	}
	sink.Emit(event.Event{Phase: "image", Kind: event.Done, Msg: fmt.Sprintf("installer %s: %d bytes (initrd %d, kernel %d)", out, inst.Bytes, inst.InitrdBytes, inst.KernelBytes)})
	return inst, nil
}

// installerInputs are the installer's options checked and defaulted.
type installerInputs struct {
	comp    Compression
	agent   string // a static nixos-via
	kernel  Kernel
	cmdline string // the installer's whole kernel command line
}

// resolveInstaller checks opts and fills in the defaults: zstd, the running
// executable as the agent (which must be static), the host's kernel.
func resolveInstaller(out string, opts InstallerOptions) (installerInputs, error) {
	var in installerInputs
	if out == "" {
		return in, fmt.Errorf("no output file given")
	}
	if err := checkAuthorizedKeys(opts.AuthorizedKeys); err != nil {
		return in, err
	}
	comp := opts.Compression
	if comp == "" {
		comp = Zstd
	}
	comp, err := ParseCompression(string(comp))
	if err != nil {
		return in, err
	}
	in.comp = comp
	if in.agent, err = staticAgent(opts.Agent); err != nil {
		return in, err
	}
	in.kernel = opts.Kernel
	if in.kernel.Version == "" {
		if in.kernel, err = HostKernel(""); err != nil {
			return in, err
		}
	}
	in.cmdline = strings.TrimSpace("console=tty0 console=ttyS0,115200 panic=30 " + opts.Cmdline)
	if strings.ContainsAny(in.cmdline, "\"`$\\\n") {
		return in, fmt.Errorf("kernel command line %q contains shell metacharacters", in.cmdline)
	}
	return in, nil
}

// staticAgent returns agent, or the running executable when it is empty,
// refusing a dynamically linked one: the installer has no libc for it.
func staticAgent(agent string) (string, error) {
	if agent == "" {
		var err error
		if agent, err = os.Executable(); err != nil {
			return "", fmt.Errorf("find own executable: %w", err)
		}
	}
	if dyn, err := elfdeps.IsDynamic(agent); err != nil {
		return "", fmt.Errorf("agent: %w", err)
	} else if dyn {
		return "", fmt.Errorf("agent %s is dynamically linked; build nixos-via with CGO_ENABLED=0 or pass --agent", agent)
	}
	return agent, nil
}

// installerSystem fills the installer's initrd tree: programs, modules,
// configuration, test fixtures and /init.
func (b *builder) installerSystem(ctx context.Context, agent string, opts InstallerOptions) error {
	if err := b.installerProgramFiles(ctx, agent); err != nil {
		return err
	}
	if err := b.installerModuleFiles(ctx); err != nil {
		return err
	}
	if err := b.installerConfig(opts); err != nil {
		return err
	}
	if err := b.testFixtures(opts.TestFixtures); err != nil {
		return err
	}
	if _, err := os.Stat("/etc/mke2fs.conf"); err == nil {
		if err := b.t.CopyFile("/etc/mke2fs.conf", "/etc/mke2fs.conf", 0o644); err != nil {
			return err
		}
	}
	return b.t.Symlink("/init", "/usr/bin/busybox")
}

// installerProgramFiles adds busybox, the Debian programs (the optional
// ones the host has), their links and the agent as /usr/bin/nixos-via.
func (b *builder) installerProgramFiles(ctx context.Context, agent string) error {
	if err := b.busybox(ctx); err != nil {
		return err
	}
	required, optional := installerPrograms()
	for _, p := range optional {
		if _, err := os.Stat(p); err == nil {
			required = append(required, p)
		}
	}
	if err := b.exec(required...); err != nil {
		return err
	}
	links := installerLinks()
	names := make([]string, 0, len(links))
	for n := range links {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := b.link(n, links[n]); err != nil {
			return err
		}
	}
	if err := b.t.CopyFile("/usr/bin/nixos-via", agent, 0o755); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// installerModuleFiles adds the installer's kernel modules this kernel has
// and /etc/modules-load, the boot set rc loads in order; the rest come on
// demand.
func (b *builder) installerModuleFiles(ctx context.Context) error {
	allMods, bootMods := installerModules()
	// Modules this kernel has neither as a module nor built in are
	// skipped (the cloud kernel has no ahci, for example).
	present := b.presentModules(allMods)
	// Load the boot set first, in order; the rest come on demand.
	if err := b.modules(ctx, b.presentModules(bootMods)...); err != nil {
		return err
	}
	nBoot := len(b.mods)
	if err := b.modules(ctx, present...); err != nil {
		return err
	}
	if err := b.finishModules(ctx); err != nil {
		return err
	}
	modroot := "/usr/lib/modules/" + b.kernel.Version + "/"
	var bootList strings.Builder
	for _, m := range b.mods[:nBoot] {
		bootList.WriteString(modroot + m + "\n")
	}
	return b.t.File("/etc/modules-load", []byte(bootList.String()), 0o644)
}

// presentModules returns those of names the kernel has, as a module or
// built in.
func (b *builder) presentModules(names []string) []string {
	var out []string
	for _, m := range names {
		if _, ok := b.kidx.Path(m); ok {
			out = append(out, m)
		}
	}
	return out
}

// installerOSRelease: ID=nixos + VARIANT_ID=installer is what
// nixos-anywhere and nixos-via check to treat a host as a NixOS installer.
const installerOSRelease = `PRETTY_NAME="NixOS installer (nixos-via, Debian parts)"
NAME=NixOS
ID=nixos
VARIANT="nixos-via kexec installer"
VARIANT_ID=installer
BUILD_ID=nixos-via
`

// installerConfig writes the installer's /etc: os-release and the basic
// files, the baked-in host keys, sshd_config, inittab, rc, lvm.conf,
// root's authorized_keys and profile.
func (b *builder) installerConfig(opts InstallerOptions) error {
	if err := b.basicFiles("nixos-installer", installerOSRelease, nil); err != nil {
		return err
	}
	for _, hk := range opts.HostKeys {
		p := "/etc/ssh/ssh_host_" + hk.Type + "_key"
		if err := b.t.File(p, hk.PrivatePEM, 0o600); err != nil {
			return err
		}
		if err := b.t.File(p+".pub", []byte(hk.PublicLine+"\n"), 0o644); err != nil {
			return err
		}
	}
	hostKeyLines, keygen, err := installerHostKeys(opts.SSHHostKeyTypes)
	if err != nil {
		return err
	}
	sshdConf := fmt.Sprintf(sshdConfig, hostKeyLines) + "SetEnv DM_DISABLE_UDEV=1\n"
	shared := ""
	if opts.SharedMounts {
		shared = rcSharedMounts
	}
	rc := rcHead + shared + rcRestore + keygen + rcDHCP + rcTail + "echo \"[init] nixos-via installer ready\"\n"
	for _, f := range []struct {
		p, data string
		perm    uint32
	}{
		{"/etc/ssh/sshd_config", sshdConf, 0o644},
		{"/etc/inittab", inittab, 0o644},
		{"/etc/rc", rc, 0o755},
		{"/etc/lvm/lvm.conf", installerLVMConf, 0o644},
		{"/root/.ssh/authorized_keys", joinLines(opts.AuthorizedKeys), 0o600},
		{"/etc/profile", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport DM_DISABLE_UDEV=1\n", 0o644},
	} {
		if err := b.t.File(f.p, []byte(f.data), f.perm); err != nil {
			return err
		}
	}
	return nil
}

// installerHostKeys returns sshd_config's HostKey lines for the key types
// the installer offers (nil: NixOS's default) and rc's lines that make each
// missing one at boot, as NixOS's sshd-keygen.
func installerHostKeys(types []string) (hostKeyLines, keygen string, err error) {
	if types == nil {
		types = nixosHostKeyTypes
	}
	var lines, gen strings.Builder
	for _, typ := range types {
		if !slices.Contains([]string{"rsa", "ecdsa", "ed25519"}, typ) {
			return "", "", fmt.Errorf("unknown host key type %q (want rsa, ecdsa or ed25519)", typ)
		}
		f := "/etc/ssh/ssh_host_" + typ + "_key"
		fmt.Fprintf(&lines, "HostKey %s\n", f)
		fmt.Fprintf(&gen, "[ -e %[1]s ] || ssh-keygen -q -t %[2]s -N '' -f %[1]s\n", f, typ)
	}
	return lines.String(), gen.String(), nil
}

// testFixtures adds the tests' stand-in executables, in path order.
func (b *builder) testFixtures(fixtures map[string]string) error {
	paths := make([]string, 0, len(fixtures))
	for p := range fixtures {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if !path.IsAbs(p) {
			return fmt.Errorf("test fixture %q: want an absolute path", p)
		}
		if err := b.t.File(p, []byte(fixtures[p]), 0o755); err != nil {
			return fmt.Errorf("test fixture %s: %w", p, err)
		}
	}
	return nil
}

// installerTarball writes the tree as the initrd and it, the kernel, the
// run script and the helpers into the tarball at out. Over the size budget
// it returns the Installer with the error.
func (b *builder) installerTarball(out string, in installerInputs) (*Installer, error) {
	var initrd bytes.Buffer
	if err := writeCompressed(&initrd, in.comp, b.t.WriteCPIO); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	helpers, err := helperFiles()
	if err != nil {
		return nil, err
	}
	inst := &Installer{Path: out, InitrdBytes: int64(initrd.Len()), Cmdline: in.cmdline}
	if st, err := os.Stat(in.kernel.Image); err == nil {
		inst.KernelBytes = st.Size()
	}
	files := []tarFile{
		{name: "kexec/bzImage", src: in.kernel.Image, mode: 0o644},
		{name: "kexec/initrd", data: initrd.Bytes(), mode: 0o644},
		{name: "kexec/run", data: []byte(strings.ReplaceAll(runScript, "@CMDLINE@", in.cmdline)), mode: 0o755},
	}
	files = append(files, helpers...)
	if err := writeTarGz(out, files); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	st, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	inst.Bytes = st.Size()
	if inst.Bytes > MaxInstallerBytes {
		return inst, fmt.Errorf("%s is %d bytes, over the %d byte budget", out, inst.Bytes, MaxInstallerBytes)
	}
	return inst, nil
}

type tarFile struct {
	name string
	data []byte
	src  string
	link string
	mode int64
}

// helperFiles returns kexec/busybox (static), and kexec/kexec and kexec/ip
// as wrappers around the Debian programs in kexec/libexec with their
// libraries and loader in kexec/lib.
func helperFiles() ([]tarFile, error) {
	files := []tarFile{{name: "kexec/busybox", src: "/bin/busybox", mode: 0o755}}
	res := elfdeps.NewResolver()
	progs := map[string]string{"kexec": "/usr/sbin/kexec", "ip": "/usr/bin/ip"}
	libs, err := res.Collect(progs["kexec"], progs["ip"])
	if err != nil {
		return nil, fmt.Errorf("helpers (install kexec-tools and iproute2): %w", err)
	}
	loader := ""
	seen := map[string]bool{}
	for _, l := range libs {
		base := path.Base(l)
		if strings.HasPrefix(base, "ld-linux") {
			loader = base
		}
		if seen[base] {
			continue
		}
		seen[base] = true
		files = append(files, tarFile{name: "kexec/lib/" + base, src: l, mode: 0o755})
	}
	if loader == "" {
		return nil, fmt.Errorf("helpers: no dynamic loader among %v", libs)
	}
	for _, name := range []string{"ip", "kexec"} {
		files = append(files,
			tarFile{name: "kexec/libexec/" + name, src: progs[name], mode: 0o755},
			tarFile{name: "kexec/" + name, mode: 0o755,
				data: []byte(strings.NewReplacer("@LOADER@", loader, "@NAME@", name).Replace(wrapperScript))})
	}
	return files, nil
}

// writeTarGz writes a gzip'd tar with root-owned entries, fixed mtimes and
// the parent directories of every file.
func writeTarGz(out string, files []tarFile) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for _, file := range files {
		for d := path.Dir(file.name); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var dirList []string
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, file := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: file.name, Mode: file.mode, Format: tar.FormatPAX}
		var r io.Reader
		if file.src != "" {
			src, err := os.Open(file.src)
			if err != nil {
				return err
			}
			defer src.Close()
			st, err := src.Stat()
			if err != nil {
				return err
			}
			hdr.Size, r = st.Size(), src
		} else {
			hdr.Size, r = int64(len(file.data)), bytes.NewReader(file.data)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("%s: %w", file.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// AgentFromPath checks that p is a static executable usable as the agent.
func AgentFromPath(p string) error {
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	dyn, err := elfdeps.IsDynamic(abs)
	if err != nil {
		return fmt.Errorf("agent %s: %w", p, err)
	}
	if dyn {
		return fmt.Errorf("agent %s is dynamically linked; build it with CGO_ENABLED=0", p)
	}
	return nil
}
