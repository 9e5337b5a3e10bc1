package images

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
)

// ProviderOptions configure the "generic Linux host" image.
type ProviderOptions struct {
	// Kernel to boot; zero means HostKernel("").
	Kernel Kernel
	// HostKeys are the SSH host keys (at least one; parse with ParseHostKey).
	// Types a stock Debian/Ubuntu server has (rsa, ecdsa, ed25519) that are
	// not given are generated, unless OnlyGivenHostKeys.
	HostKeys []HostKey
	// OnlyGivenHostKeys leaves the host with just HostKeys.
	OnlyGivenHostKeys bool
	// RootAuthorizedKeys are written to /root/.ssh/authorized_keys.
	RootAuthorizedKeys []string
	// User, when set, is a non-root login (uid 1000) in group sudo.
	User string
	// UserPassword is the user's password, asked by sudo. Empty means the
	// account has no password and sudo needs none (NOPASSWD).
	UserPassword string
	// UserAuthorizedKeys are the user's keys; nil means RootAuthorizedKeys.
	UserAuthorizedKeys []string
	// RootPassword, when set, is root's password (console, and SSH with
	// PasswordLogin), as on a VPS whose provider mails a root password.
	RootPassword string
	// PasswordLogin lets sshd take passwords (PasswordAuthentication yes);
	// with RootPassword and no PermitRootLogin, root may log in with it.
	PasswordLogin bool
	// PermitRootLogin is sshd's setting: "" means prohibit-password (keys
	// only), or with RootPassword and PasswordLogin yes; "no" is a
	// Debian-style image whose admin logs in as User.
	PermitRootLogin string
	// SSHPort is sshd's port; 0 means 22.
	SSHPort int
	// Cmdline is appended to the default kernel command line
	// ("console=ttyS0 panic=-1"), e.g. "sysctl.kernel.kexec_load_disabled=1".
	Cmdline string
	// Hostname defaults to "provider".
	Hostname string
	// NoKexecTools leaves kexec-tools out of the image.
	NoKexecTools bool
	// Compression of the initramfs; "" means gzip.
	Compression Compression
	// Events receives progress; nil discards.
	Events event.Sink
}

// HostKeysFile in a provider's directory lists its public host keys
// (authorized_keys lines), for tests to compare with what they saw.
const HostKeysFile = "ssh_host_keys.pub"

// debianHostKeyTypes are the host key types Debian's openssh-server makes.
var debianHostKeyTypes = []string{"rsa", "ecdsa", "ed25519"}

// Provider is a built provider image.
type Provider struct {
	Kernel  string // DIR/bzImage
	Initrd  string // DIR/initrd
	Cmdline string // kernel command line to boot with (also in DIR/cmdline)
	// InitrdBytes is the compressed size of the initrd.
	InitrdBytes int64
	// UnpackedBytes is the size of all files in the initrd.
	UnpackedBytes int64
}

var userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// providerModules are loaded at boot, in dependency order, so that QEMU's
// virtio disks, network and RNG work.
func providerModules() []string {
	return []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtio_console"}
}

// DefaultCmdline is the kernel command line both images boot with.
const DefaultCmdline = "console=ttyS0 panic=-1"

const inittab = `::sysinit:/etc/rc
::ctrlaltdel:/usr/sbin/reboot -f
::shutdown:/usr/bin/sync
`

// rcHead brings up the kernel file systems and loads the modules.
const rcHead = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mkdir -p /run/sshd /run/cryptsetup /run/lock /var/log /var/tmp
echo "[init] $(. /etc/os-release; echo "$PRETTY_NAME") starting on $(uname -r)"
while read -r m; do
	insmod "$m" 2>/dev/null || echo "[init] insmod $m failed"
done < /etc/modules-load
hostname -F /etc/hostname
ip link set lo up
`

// rcDHCP waits for network interfaces and runs DHCP on each one.
const rcDHCP = `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	[ -n "$(ls /sys/class/net | grep -v '^lo$')" ] && break
	sleep 0.1
done
for dev in $(ls /sys/class/net); do
	[ "$dev" = lo ] && continue
	ip link set "$dev" up
	udhcpc -i "$dev" -n -q -t 10 -T 1 -s /usr/share/udhcpc/default.script || echo "[init] dhcp on $dev failed"
done
`

const rcTail = `/usr/sbin/sshd -E /run/sshd.log || echo "[init] sshd failed: $(cat /run/sshd.log)"
echo "[init] sshd started: $(cat /etc/ssh/ssh_host_*_key.pub | cut -d' ' -f1,2 | tr '\n' ' ')"
`

// BuildProvider writes DIR/bzImage, DIR/initrd and DIR/cmdline: a busybox +
// OpenSSH + sudo (+ kexec-tools) system that gets its address by DHCP,
// standing for the Debian/Ubuntu VPS a user starts from. It has no Nix.
func BuildProvider(ctx context.Context, dir string, opts ProviderOptions) (*Provider, error) {
	sink := opts.Events
	if sink == nil {
		sink = event.Discard{}
	}
	in, err := resolveProvider(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("provider image: %w", err)
	}
	sink.Emit(event.Event{Phase: "image", Kind: event.Step, Msg: "building provider initramfs with kernel " + in.kernel.Version})
	b, err := newBuilder(in.kernel)
	if err != nil {
		return nil, fmt.Errorf("provider image: %w", err)
	}
	hostKeys, err := b.providerPrograms(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("provider image: %w", err)
	}
	if err := b.providerConfig(ctx, in.hostname, opts); err != nil {
		return nil, fmt.Errorf("provider image: %w", err)
	}
	p, err := b.writeProvider(dir, in, hostKeys, opts.Cmdline)
	if err != nil {
		return nil, fmt.Errorf("provider image: %w", err)
	}
	sink.Emit(event.Event{Phase: "image", Kind: event.Done, Msg: fmt.Sprintf("provider initrd %s: %d bytes (%d unpacked)", p.Initrd, p.InitrdBytes, p.UnpackedBytes)})
	return p, nil
}

// providerInputs are the provider's options checked and defaulted.
type providerInputs struct {
	comp     Compression
	kernel   Kernel
	hostname string
}

// resolveProvider checks opts and fills in the defaults: the host's
// kernel, the hostname "provider".
func resolveProvider(dir string, opts ProviderOptions) (providerInputs, error) {
	var in providerInputs
	if err := checkProviderOptions(dir, opts); err != nil {
		return in, err
	}
	comp, err := ParseCompression(string(opts.Compression))
	if err != nil {
		return in, err
	}
	in.comp = comp
	in.kernel = opts.Kernel
	if in.kernel.Version == "" {
		if in.kernel, err = HostKernel(""); err != nil {
			return in, err
		}
	}
	in.hostname = opts.Hostname
	if in.hostname == "" {
		in.hostname = "provider"
	}
	return in, nil
}

// checkProviderOptions refuses options the provider cannot be built with.
func checkProviderOptions(dir string, opts ProviderOptions) error {
	if dir == "" {
		return fmt.Errorf("no output directory given")
	}
	if len(opts.HostKeys) == 0 {
		return fmt.Errorf("at least one host key is needed")
	}
	if err := checkAuthorizedKeys(opts.RootAuthorizedKeys); err != nil {
		return fmt.Errorf("root %w", err)
	}
	if opts.User != "" {
		if !userNameRE.MatchString(opts.User) || opts.User == "root" || opts.User == "sshd" || opts.User == "nobody" {
			return fmt.Errorf("invalid user name %q", opts.User)
		}
		if err := checkAuthorizedKeys(opts.UserAuthorizedKeys); err != nil {
			return fmt.Errorf("user %w", err)
		}
	} else if opts.UserPassword != "" || opts.UserAuthorizedKeys != nil {
		return fmt.Errorf("a user password or keys were given without a user name")
	}
	switch opts.PermitRootLogin {
	case "", "yes", "no", "prohibit-password":
	default:
		return fmt.Errorf("PermitRootLogin %q: want yes, no or prohibit-password", opts.PermitRootLogin)
	}
	if opts.SSHPort < 0 || opts.SSHPort > 65535 {
		return fmt.Errorf("SSH port %d out of range", opts.SSHPort)
	}
	return nil
}

// providerPrograms adds busybox, sshd with its host keys (the given ones,
// completed to Debian's set unless OnlyGivenHostKeys), ip, kexec and the
// virtio modules. It returns the host keys.
func (b *builder) providerPrograms(ctx context.Context, opts ProviderOptions) ([]HostKey, error) {
	if err := b.busybox(ctx); err != nil {
		return nil, err
	}
	hostKeys := opts.HostKeys
	if !opts.OnlyGivenHostKeys {
		var err error
		if hostKeys, err = completeHostKeys(hostKeys, debianHostKeyTypes); err != nil {
			return nil, err
		}
	}
	if err := b.sshd(hostKeys); err != nil {
		return nil, err
	}
	// iproute2: the kexec tarball's run script and the facts probe use
	// `ip --json`, which busybox's ip lacks. A real host has it.
	if err := b.exec("/usr/bin/ip"); err != nil {
		return nil, fmt.Errorf("%w (install iproute2)", err)
	}
	if !opts.NoKexecTools {
		if err := b.exec("/usr/sbin/kexec"); err != nil {
			return nil, fmt.Errorf("%w (install kexec-tools)", err)
		}
	}
	if err := b.modules(ctx, providerModules()...); err != nil {
		return nil, err
	}
	if err := b.finishModules(ctx); err != nil {
		return nil, err
	}
	return hostKeys, nil
}

// providerOSRelease says Debian 12, as the VPS the provider stands for.
const providerOSRelease = `PRETTY_NAME="nixos-via test provider (Debian 12 parts)"
NAME="nixos-via test provider"
ID=debian
VERSION_ID="12"
VARIANT_ID=nixos-via-provider
`

// providerConfig writes the provider's /etc, the user, root's
// authorized_keys, inittab, rc and /init.
func (b *builder) providerConfig(ctx context.Context, hostname string, opts ProviderOptions) error {
	users, rcUsers, err := b.providerUser(ctx, opts)
	if err != nil {
		return err
	}
	if err := b.basicFiles(hostname, providerOSRelease, users); err != nil {
		return err
	}
	if err := b.providerAccess(ctx, opts); err != nil {
		return err
	}
	if err := b.t.File("/root/.ssh/authorized_keys", []byte(joinLines(opts.RootAuthorizedKeys)), 0o600); err != nil {
		return err
	}
	if err := b.t.Dir("/root/.ssh", 0o700); err != nil {
		return err
	}
	rc := rcHead + rcDHCP + rcUsers + rcTail
	for _, f := range []struct {
		p, data string
		perm    uint32
	}{{"/etc/inittab", inittab, 0o644}, {"/etc/rc", rc, 0o755}} {
		if err := b.t.File(f.p, []byte(f.data), f.perm); err != nil {
			return err
		}
	}
	return b.t.Symlink("/init", "/usr/bin/busybox")
}

// providerUser adds opts.User (if any): its password hash, its
// authorized_keys (root's when it has none of its own) and sudo. It
// returns the users for /etc/passwd and rc's lines that give the user its
// home.
func (b *builder) providerUser(ctx context.Context, opts ProviderOptions) (users []user, rcUsers string, err error) {
	if opts.User == "" {
		return nil, "", nil
	}
	u := user{name: opts.User, uid: 1000}
	if opts.UserPassword != "" {
		if u.hash, err = hashPassword(ctx, opts.UserPassword); err != nil {
			return nil, "", err
		}
	}
	home := "/home/" + opts.User
	keys := opts.UserAuthorizedKeys
	if keys == nil {
		keys = opts.RootAuthorizedKeys
	}
	if err := b.t.File(home+"/.ssh/authorized_keys", []byte(joinLines(keys)), 0o600); err != nil {
		return nil, "", err
	}
	if err := b.sudo(opts.UserPassword == ""); err != nil {
		return nil, "", err
	}
	rcUsers = fmt.Sprintf("chown -R %[1]s:%[1]s %[2]s\nchmod 700 %[2]s %[2]s/.ssh\n", opts.User, home)
	return []user{u}, rcUsers, nil
}

// writeProvider writes DIR's files: the host keys' public lines, the
// kernel, the initrd from the tree and the command line.
func (b *builder) writeProvider(dir string, in providerInputs, hostKeys []HostKey, cmdline string) (*Provider, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var pubs []string
	for _, k := range hostKeys {
		pubs = append(pubs, k.PublicLine)
	}
	if err := os.WriteFile(filepath.Join(dir, HostKeysFile), []byte(joinLines(pubs)), 0o644); err != nil {
		return nil, err
	}
	p := &Provider{
		Kernel:  filepath.Join(dir, "bzImage"),
		Initrd:  filepath.Join(dir, "initrd"),
		Cmdline: strings.TrimSpace(DefaultCmdline + " " + cmdline),
	}
	if err := copyFile(p.Kernel, in.kernel.Image, 0o644); err != nil {
		return nil, err
	}
	if err := writeInitramfs(b.t, p.Initrd, in.comp); err != nil {
		return nil, fmt.Errorf("write %s: %w", p.Initrd, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p.Cmdline+"\n"), 0o644); err != nil {
		return nil, err
	}
	if st, err := os.Stat(p.Initrd); err == nil {
		p.InitrdBytes = st.Size()
	}
	p.UnpackedBytes, _ = b.t.Size()
	return p, nil
}

// providerAccess shapes how one logs in: root's password in /etc/shadow,
// and sshd's port, root login and password settings.
func (b *builder) providerAccess(ctx context.Context, opts ProviderOptions) error {
	if opts.RootPassword != "" {
		hash, err := hashPassword(ctx, opts.RootPassword)
		if err != nil {
			return err
		}
		if err := b.replaceIn("/etc/shadow", "root:*:", "root:"+hash+":"); err != nil {
			return err
		}
	}
	permit := opts.PermitRootLogin
	if permit == "" && opts.RootPassword != "" && opts.PasswordLogin {
		permit = "yes"
	}
	if permit != "" {
		if err := b.replaceIn("/etc/ssh/sshd_config", "PermitRootLogin prohibit-password\n", "PermitRootLogin "+permit+"\n"); err != nil {
			return err
		}
	}
	if opts.PasswordLogin {
		if err := b.replaceIn("/etc/ssh/sshd_config", "PasswordAuthentication no\n", "PasswordAuthentication yes\n"); err != nil {
			return err
		}
	}
	if opts.SSHPort != 0 && opts.SSHPort != 22 {
		if err := b.replaceIn("/etc/ssh/sshd_config", "Port 22\n", fmt.Sprintf("Port %d\n", opts.SSHPort)); err != nil {
			return err
		}
	}
	return nil
}

// replaceIn replaces the one occurrence of old in the tree's file p.
func (b *builder) replaceIn(p, old, new string) error {
	e := b.t.Get(p)
	if e == nil || e.Data == nil {
		return fmt.Errorf("%s: not in the image", p)
	}
	data := string(e.Data)
	if strings.Count(data, old) != 1 {
		return fmt.Errorf("%s: %q is not there exactly once", p, strings.TrimSpace(old))
	}
	return b.t.File(p, []byte(strings.Replace(data, old, new, 1)), e.Perm)
}

func joinLines(lines []string) string {
	var s strings.Builder
	for _, l := range lines {
		s.WriteString(strings.TrimSpace(l) + "\n")
	}
	return s.String()
}

// sudo adds Debian's sudo with a minimal PAM stack (pam_unix) so that a
// member of group sudo can become root, with or without a password.
func (b *builder) sudo(noPassword bool) error {
	pamDir := "/usr/lib/x86_64-linux-gnu/security/"
	if err := b.exec("/usr/bin/sudo", "/usr/libexec/sudo/sudoers.so",
		pamDir+"pam_unix.so", pamDir+"pam_permit.so", pamDir+"pam_deny.so"); err != nil {
		return fmt.Errorf("sudo: %w (install sudo)", err)
	}
	rule := "%sudo ALL=(ALL:ALL) ALL\n"
	if noPassword {
		rule = "%sudo ALL=(ALL:ALL) NOPASSWD: ALL\n"
	}
	sudoers := "Defaults !fqdn, !lecture, !syslog, env_reset\n" +
		"Defaults secure_path=\"/usr/sbin:/usr/bin:/sbin:/bin\"\n" +
		"root ALL=(ALL:ALL) ALL\n" + rule
	pam := "auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_permit.so\n"
	for _, f := range []struct {
		p, data string
		perm    uint32
	}{
		{"/etc/sudoers", sudoers, 0o440},
		{"/etc/pam.d/sudo", pam, 0o644},
		{"/etc/pam.d/other", "auth required pam_deny.so\naccount required pam_deny.so\nsession required pam_deny.so\npassword required pam_deny.so\n", 0o644},
	} {
		if err := b.t.File(f.p, []byte(f.data), f.perm); err != nil {
			return err
		}
	}
	return nil
}

// completeHostKeys adds a generated key of each of types that keys lack.
func completeHostKeys(keys []HostKey, types []string) ([]HostKey, error) {
	out := append([]HostKey(nil), keys...)
	for _, typ := range types {
		if slices.ContainsFunc(out, func(k HostKey) bool { return k.Type == typ }) {
			continue
		}
		k, err := GenerateHostKey(typ)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// GenerateHostKey makes a host key of type "rsa" (3072 bits, as
// ssh-keygen), "ecdsa" (P-256) or "ed25519".
func GenerateHostKey(typ string) (HostKey, error) {
	var priv crypto.Signer
	var err error
	switch typ {
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return HostKey{}, fmt.Errorf("generate host key: unknown type %q", typ)
	}
	if err != nil {
		return HostKey{}, fmt.Errorf("generate %s host key: %w", typ, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return HostKey{}, fmt.Errorf("generate %s host key: %w", typ, err)
	}
	return ParseHostKey(pem.EncodeToMemory(block))
}
