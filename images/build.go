// Package images builds the test world's boot images from a Debian host:
// a "provider" kernel+initramfs standing for the VPS a user starts from,
// and a kexec installer tarball in the nixos-images layout. Both are made
// from the host's Debian cloud kernel and Debian binaries (copied with
// their shared libraries), without Nix.
package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/images/elfdeps"
	"github.com/nixos-via/nixos-via/images/fstree"
	"github.com/nixos-via/nixos-via/images/kmod"
)

// Compression of an initramfs.
type Compression string

// Supported initramfs compressions; the Debian kernel unpacks all of them.
const (
	Gzip          Compression = "gzip"
	Zstd          Compression = "zstd"
	NoCompression Compression = "none"
)

// ParseCompression validates a compression name ("" means gzip).
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case "", Gzip:
		return Gzip, nil
	case Zstd, NoCompression:
		return Compression(s), nil
	}
	return "", fmt.Errorf("unknown compression %q (want gzip, zstd or none)", s)
}

// Kernel is a kernel image with its module tree.
type Kernel struct {
	Version    string // e.g. 6.1.0-56-cloud-amd64
	Image      string // /boot/vmlinuz-<version>
	ModulesDir string // /lib/modules/<version>
}

// HostKernel finds an installed kernel: the given version, or else the
// newest Debian cloud kernel (linux-image-cloud-amd64), or else the newest
// kernel that has both an image in /boot and a module tree.
func HostKernel(version string) (Kernel, error) {
	check := func(v string) (Kernel, error) {
		k := Kernel{Version: v, Image: "/boot/vmlinuz-" + v, ModulesDir: "/lib/modules/" + v}
		if _, err := os.Stat(k.Image); err != nil {
			return k, fmt.Errorf("kernel %s: %w", v, err)
		}
		if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.dep")); err != nil {
			return k, fmt.Errorf("kernel %s: %w", v, err)
		}
		return k, nil
	}
	if version != "" {
		return check(version)
	}
	dirs, _ := filepath.Glob("/lib/modules/*")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	var fallback []string
	for _, d := range dirs {
		v := filepath.Base(d)
		if strings.HasSuffix(v, "-cloud-amd64") {
			if k, err := check(v); err == nil {
				return k, nil
			}
		} else {
			fallback = append(fallback, v)
		}
	}
	for _, v := range fallback {
		if k, err := check(v); err == nil {
			return k, nil
		}
	}
	return Kernel{}, fmt.Errorf("no kernel with /boot/vmlinuz-* and /lib/modules/*/modules.dep found (install linux-image-cloud-amd64)")
}

// HostKey is one SSH host key for an image.
type HostKey struct {
	Type       string // "ed25519", "rsa", "ecdsa" (as in ssh_host_<type>_key)
	PrivatePEM []byte
	PublicLine string // "ssh-ed25519 AAAA…"
}

// ParseHostKey reads an OpenSSH/PEM private key and derives its file type
// and public line. The key must not be passphrase-protected.
func ParseHostKey(pem []byte) (HostKey, error) {
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return HostKey{}, fmt.Errorf("parse host key: %w", err)
	}
	pub := signer.PublicKey()
	var typ string
	switch t := pub.Type(); {
	case t == ssh.KeyAlgoED25519:
		typ = "ed25519"
	case t == ssh.KeyAlgoRSA:
		typ = "rsa"
	case strings.HasPrefix(t, "ecdsa-"):
		typ = "ecdsa"
	default:
		return HostKey{}, fmt.Errorf("parse host key: unsupported type %s", t)
	}
	return HostKey{Type: typ, PrivatePEM: pem, PublicLine: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))}, nil
}

// checkAuthorizedKeys validates authorized_keys lines.
func checkAuthorizedKeys(lines []string) error {
	for i, l := range lines {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l)); err != nil {
			return fmt.Errorf("authorized key %d: %w", i+1, err)
		}
	}
	return nil
}

// builder assembles one initramfs tree.
type builder struct {
	t      *fstree.Tree
	res    *elfdeps.Resolver
	kernel Kernel
	kidx   *kmod.Index
	mods   []string // relative module paths, load order
}

func newBuilder(k Kernel) (*builder, error) {
	idx, err := kmod.Load(k.ModulesDir)
	if err != nil {
		return nil, err
	}
	b := &builder{t: fstree.NewMergedUsr(), res: elfdeps.NewResolver(), kernel: k, kidx: idx}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/root", "/etc", "/var", "/mnt"} {
		perm := uint32(0o755)
		switch d {
		case "/tmp":
			perm = 0o1777
		case "/root":
			perm = 0o700
		}
		if err := b.t.Dir(d, perm); err != nil {
			return nil, err
		}
	}
	if err := b.t.CharDev("/dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	if err := b.t.CharDev("/dev/null", 0o666, 1, 3); err != nil {
		return nil, err
	}
	return b, nil
}

// busybox adds the static busybox with one symlink per applet. Real
// programs added later replace the links.
func (b *builder) busybox(ctx context.Context) error {
	const bb = "/usr/bin/busybox"
	src := "/bin/busybox"
	if dyn, err := elfdeps.IsDynamic(src); err != nil {
		return fmt.Errorf("busybox: %w (install busybox-static)", err)
	} else if dyn {
		return fmt.Errorf("busybox: %s is dynamically linked; install busybox-static", src)
	}
	if err := b.t.CopyFile(bb, src, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, src, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	for _, name := range strings.Fields(string(out)) {
		if err := b.t.SymlinkIfAbsent("/"+name, bb); err != nil {
			return err
		}
	}
	// Debian's busybox-static runs its own applets before anything in
	// PATH when its ash is the shell, which would hide iproute2, util-linux
	// and the rest. dash, Debian's /bin/sh, searches PATH as usual.
	if err := b.exec("/usr/bin/dash"); err != nil {
		return fmt.Errorf("busybox: %w (install dash)", err)
	}
	return b.t.Symlink("/usr/bin/sh", "dash")
}

// exec adds programs (host paths, installed at the same path) with every
// library they need. dlopen'd modules can be given as extra files: they
// are copied too. Busybox applet links with the same base name are removed
// so that the real program is found first in PATH.
func (b *builder) exec(files ...string) error {
	libs, err := b.res.Collect(files...)
	if err != nil {
		return err
	}
	for _, f := range append(append([]string{}, files...), libs...) {
		if err := b.t.CopyFile(f, f, 0); err != nil {
			return err
		}
	}
	for _, f := range files {
		name := path.Base(f)
		for _, dir := range []string{"/usr/bin/", "/usr/sbin/"} {
			if e := b.t.Get(dir + name); e != nil && e.Kind == fstree.Symlink && e.Target == "/usr/bin/busybox" {
				if err := b.t.Remove(dir + name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// link adds symlinks such as mkfs.ext4 -> mke2fs, replacing applet links.
func (b *builder) link(p, target string) error { return b.t.Symlink(p, target) }

// modules adds kernel modules with their dependencies; /etc/modules-load
// lists their paths in load order for init's insmod loop. A modules.dep
// for the subset (and depmod's indexes when depmod is available) is
// written so that modprobe works too.
func (b *builder) modules(ctx context.Context, names ...string) error {
	mods, err := b.kidx.Resolve(names...)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, m := range b.mods {
		have[m] = true
	}
	for _, m := range mods {
		if !have[m] {
			b.mods = append(b.mods, m)
			have[m] = true
		}
	}
	return nil
}

func (b *builder) finishModules(ctx context.Context) error {
	if len(b.mods) == 0 {
		return nil
	}
	modroot := "/usr/lib/modules/" + b.kernel.Version
	var list bytes.Buffer
	for _, m := range b.mods {
		if err := b.t.CopyFile(path.Join(modroot, m), filepath.Join(b.kernel.ModulesDir, m), 0o644); err != nil {
			return err
		}
		list.WriteString(path.Join(modroot, m) + "\n")
	}
	if err := b.t.File("/etc/modules-load", list.Bytes(), 0o644); err != nil {
		return err
	}
	dep, err := b.kidx.DepFile(b.mods)
	if err != nil {
		return err
	}
	if err := b.t.File(modroot+"/modules.dep", dep, 0o644); err != nil {
		return err
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if _, err := os.Stat(filepath.Join(b.kernel.ModulesDir, f)); err == nil {
			if err := b.t.CopyFile(modroot+"/"+f, filepath.Join(b.kernel.ModulesDir, f), 0o644); err != nil {
				return err
			}
		}
	}
	// depmod's binary indexes let kmod's modprobe resolve names and aliases.
	stage, err := os.MkdirTemp("", "nixos-via-depmod-")
	if err != nil {
		return fmt.Errorf("depmod staging: %w", err)
	}
	defer os.RemoveAll(stage)
	kdir := filepath.Join(stage, "lib/modules", b.kernel.Version)
	for _, m := range b.mods {
		dst := filepath.Join(kdir, m)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(filepath.Join(b.kernel.ModulesDir, m), dst); err != nil {
			return err
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		os.Symlink(filepath.Join(b.kernel.ModulesDir, f), filepath.Join(kdir, f))
	}
	if err := kmod.Depmod(ctx, stage, b.kernel.Version); err != nil {
		return err
	}
	generated, _ := filepath.Glob(filepath.Join(kdir, "modules.*"))
	for _, g := range generated {
		st, err := os.Lstat(g)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(g)
		if err != nil {
			return err
		}
		if err := b.t.File(modroot+"/"+filepath.Base(g), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// sshdConfig is the server configuration of both images: keys only, no PAM.
const sshdConfig = `Port 22
%sPermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
`

// sshd adds OpenSSH's sshd and sftp-server, host keys and the config.
func (b *builder) sshd(hostKeys []HostKey) error {
	if len(hostKeys) == 0 {
		return fmt.Errorf("sshd: no host key given")
	}
	if err := b.exec("/usr/sbin/sshd", "/usr/lib/openssh/sftp-server"); err != nil {
		return fmt.Errorf("sshd: %w (install openssh-server)", err)
	}
	var hk strings.Builder
	for _, k := range hostKeys {
		p := "/etc/ssh/ssh_host_" + k.Type + "_key"
		if b.t.Get(p) != nil {
			return fmt.Errorf("sshd: two %s host keys given", k.Type)
		}
		if err := b.t.File(p, k.PrivatePEM, 0o600); err != nil {
			return err
		}
		if err := b.t.File(p+".pub", []byte(k.PublicLine+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&hk, "HostKey %s\n", p)
	}
	return b.t.File("/etc/ssh/sshd_config", []byte(fmt.Sprintf(sshdConfig, hk.String())), 0o644)
}

// udhcpcScript configures an interface from a busybox udhcpc lease. It
// never flushes, so addresses restored before DHCP stay.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip link set "$interface" up
	;;
bound|renew)
	ip addr replace "$ip/${mask:-24}" dev "$interface"
	for r in $router; do
		ip route replace default via "$r" dev "$interface"
		break
	done
	if [ -n "$dns" ]; then
		: > /etc/resolv.conf
		for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
	fi
	echo "[dhcp] $interface: $ip/${mask:-24} via $router"
	;;
esac
exit 0
`

// basicFiles adds passwd/group/shadow, the DHCP script, hosts and
// os-release. users are extra passwd lines' data.
func (b *builder) basicFiles(hostname, osRelease string, users []user) error {
	passwd := "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	group := "root:x:0:\nsudo:x:27:%s\nnogroup:x:65534:\n"
	shadow := "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
	var sudoers []string
	for _, u := range users {
		passwd += fmt.Sprintf("%s:x:%d:%d::/home/%s:/bin/sh\n", u.name, u.uid, u.uid, u.name)
		group += fmt.Sprintf("%s:x:%d:\n", u.name, u.uid)
		hash := u.hash
		if hash == "" {
			hash = "*"
		}
		shadow += fmt.Sprintf("%s:%s:19000:0:99999:7:::\n", u.name, hash)
		sudoers = append(sudoers, u.name)
	}
	group = fmt.Sprintf(group, strings.Join(sudoers, ","))
	files := []struct {
		p    string
		data string
		perm uint32
	}{
		{"/etc/passwd", passwd, 0o644},
		{"/etc/group", group, 0o644},
		{"/etc/shadow", shadow, 0o640},
		{"/etc/hostname", hostname + "\n", 0o644},
		{"/etc/hosts", "127.0.0.1 localhost " + hostname + "\n::1 localhost\n", 0o644},
		{"/etc/os-release", osRelease, 0o644},
		{"/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n", 0o644},
		{"/usr/share/udhcpc/default.script", udhcpcScript, 0o755},
		{"/etc/profile", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n", 0o644},
	}
	for _, f := range files {
		if err := b.t.File(f.p, []byte(f.data), f.perm); err != nil {
			return err
		}
	}
	return nil
}

type user struct {
	name string
	uid  int
	hash string // crypt(3) hash, "" for no password
}

// hashPassword returns a sha512-crypt hash made by busybox's mkpasswd,
// which reads the password on stdin (never argv).
func hashPassword(ctx context.Context, password string) (string, error) {
	cmd := exec.CommandContext(ctx, "/bin/busybox", "mkpasswd", "-m", "sha512")
	cmd.Stdin = strings.NewReader(password)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("busybox mkpasswd -m sha512: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	hash := strings.TrimSpace(string(out))
	if !strings.HasPrefix(hash, "$6$") {
		return "", fmt.Errorf("busybox mkpasswd -m sha512: unexpected output format")
	}
	return hash, nil
}

// writeInitramfs writes the tree, compressed, to file p.
func writeInitramfs(t *fstree.Tree, p string, c Compression) (err error) {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	return writeCompressed(f, c, t.WriteCPIO)
}

func writeCompressed(w io.Writer, c Compression, write func(io.Writer) error) error {
	switch c {
	case NoCompression:
		return write(w)
	case Gzip, "":
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return err
		}
		if err := write(zw); err != nil {
			return err
		}
		return zw.Close()
	case Zstd:
		// The kernel's zstd decoder wants a bounded window.
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20))
		if err != nil {
			return err
		}
		if err := write(zw); err != nil {
			zw.Close()
			return err
		}
		return zw.Close()
	}
	return fmt.Errorf("unknown compression %q", c)
}

// copyFile copies a host file, making dst with the given mode.
func copyFile(dst, src string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}
