package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/target"
)

// agentPath is where the agent binary lives on the target (tmpfs in the
// installer; removed by the reboot).
const agentPath = "/run/nixos-via/nixos-via"

// buildSystem builds (or takes from --store-paths) the toplevel and reads
// its closure, before anything on the target is touched.
func (f *flow) buildSystem(ctx context.Context) error {
	if f.o.StorePaths != nil {
		p, err := filepath.EvalSymlinks(f.o.StorePaths.B)
		if err != nil {
			return usagef("--store-paths: system %s: %v", f.o.StorePaths.B, err)
		}
		f.toplevel = p
	} else {
		attr := f.o.FlakeRef + "#" + f.o.FlakeAttr + ".system.build.toplevel"
		f.step("build", "building %s", attr)
		outs, err := f.nix.Build(ctx, attr)
		if err != nil {
			return fmt.Errorf("build the system: %w", err)
		}
		if len(outs) != 1 {
			return fmt.Errorf("build the system: got %d outputs, want 1", len(outs))
		}
		f.toplevel = outs[0]
	}
	closure, err := f.nix.Closure(ctx, f.toplevel)
	if err != nil {
		return fmt.Errorf("closure of %s: %w", f.toplevel, err)
	}
	f.closure = closure
	var size uint64
	for _, p := range closure {
		size += p.NarSize
	}
	f.info("build", "system %s: %d paths, %s", f.toplevel, len(closure), event.Bytes(int64(size)))
	f.nixStore = findNixStore(f.toplevel, closure)
	if f.nixStore == "" {
		return fmt.Errorf("the system %s has no nix-store (looked in sw/bin and the closure): it cannot register its own store", f.toplevel)
	}
	return nil
}

// findNixStore is the system's own nix-store, which loads the registration
// inside the installed root so the database matches the system's Nix.
func findNixStore(toplevel string, closure []nix.PathInfo) string {
	if p := filepath.Join(toplevel, "sw", "bin", "nix-store"); fileExists(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return real
		}
	}
	for _, info := range closure {
		if p := filepath.Join(info.Path, "bin", "nix-store"); fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// goArch maps `uname -m` to GOARCH.
func goArch(unameM string) string {
	switch unameM {
	case "x86_64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "i686", "i386":
		return "386"
	case "riscv64":
		return "riscv64"
	}
	return unameM
}

// agentBinary is the local file uploaded as the agent: --agent, or this
// executable when it is static and of the target's architecture.
func (f *flow) agentBinary() (string, error) {
	p := f.o.Agent
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find the agent binary: %w", err)
		}
		p = exe
	}
	ef, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("agent %s: %w", p, err)
	}
	defer ef.Close()
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("agent %s is dynamically linked; build nixos-via with CGO_ENABLED=0 or pass --agent with a static build", p)
		}
	}
	want := goArch(f.facts.Arch)
	got := map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_386: "386", elf.EM_RISCV: "riscv64"}[ef.Machine]
	if got != want {
		return "", fmt.Errorf("agent %s is for %s but the target is %s (%s); pass --agent with a build for it (GOARCH=%s CGO_ENABLED=0 go build ./cmd/nixos-via)",
			p, got, f.facts.Arch, want, want)
	}
	return p, nil
}

// install runs the install phase: agent, closure, registration, profile,
// bootloader, extra files, ownership, host keys, key removal.
func (f *flow) install(ctx context.Context) error {
	agent, err := f.agentBinary()
	if err != nil {
		return err
	}
	f.step("install", "uploading the agent")
	if err := f.uploadVerified(ctx, agent, agentPath); err != nil {
		return err
	}
	f.step("install", "copying the system closure into /mnt/nix/store")
	start := time.Now()
	stats, err := install.Send(ctx, f.conn, f.closure, install.SendOptions{Agent: agentPath, Root: "/mnt", Jobs: f.o.CopyJobs, Sink: f.ui})
	if err != nil {
		return fmt.Errorf("copy the closure: %w", err)
	}
	f.info("install", "%s in %s", sendSummary(stats), time.Since(start).Round(100*time.Millisecond))

	f.step("install", "registering the closure and setting the system profile")
	reg, err := nix.Registration(f.closure)
	if err != nil {
		return err
	}
	script := fmt.Sprintf(`set -e
mkdir -p /mnt/tmp /mnt/nix/var/nix/profiles /mnt/nix/var/nix/gcroots /mnt/etc
chmod 1777 /mnt/tmp
chroot /mnt %[1]s --load-db
# The Nix database is now the record of what is valid; the agent's own
# records were only for resuming the copy.
rm -rf /mnt/nix/var/nixos-via
# As Nix leaves a store it manages (NixOS's nixbld group is gid 30000).
chown root:30000 /mnt/nix/store && chmod 1775 /mnt/nix/store
cd /mnt/nix/var/nix/profiles
n=0
for l in system-*-link; do
  [ -L "$l" ] || continue
  g=${l#system-}; g=${g%%-link}
  case "$g" in *[!0-9]*) continue;; esac
  [ "$g" -gt "$n" ] && n=$g
  [ "$(readlink "$l")" = %[2]s ] && [ "$(readlink system)" = "$l" ] && { echo "profile: generation $g is already this system"; exit 0; }
done
n=$((n+1))
ln -sfn %[2]s "system-$n-link"
ln -sfn "system-$n-link" system
echo "profile: system generation $n"
`, target.ShellQuote(f.nixStore), target.ShellQuote(f.toplevel))
	if err := f.runWithInput(ctx, "install", "register", script, reg); err != nil {
		return err
	}

	if f.o.ExtraFiles != "" {
		if err := f.extraFiles(ctx); err != nil {
			return err
		}
	}
	for _, c := range f.o.Chown {
		cmd := fmt.Sprintf("chown -R %s %s", target.ShellQuote(c.B), target.ShellQuote(filepath.Join("/mnt", c.A)))
		if _, err := f.conn.Output(ctx, cmd, nil); err != nil {
			return fmt.Errorf("--chown %s %s: %w", c.A, c.B, err)
		}
		f.info("install", "chown -R %s /mnt%s", c.B, filepath.Join("/", c.A))
	}
	if f.o.CopyHostKeys {
		const copyKeys = `set -e
mkdir -m 755 -p /mnt/etc/ssh
for k in /etc/ssh/ssh_host_*; do
  [ -e "$k" ] || continue
  if [ -e "/mnt$k" ]; then echo "kept /mnt$k"; else cp -a "$k" "/mnt$k"; echo "copied $k"; fi
done
`
		if err := f.runScript(ctx, "install", "copy host keys", copyKeys); err != nil {
			return err
		}
	}

	f.step("install", "installing the bootloader (switch-to-configuration boot)")
	const boot = `set -e
for d in dev proc sys run; do mkdir -p /mnt/$d; done
cleanup() { for d in run sys proc dev; do umount -R /mnt/$d 2>/dev/null || umount -l /mnt/$d 2>/dev/null || true; done; }
trap cleanup EXIT
mount --rbind /dev /mnt/dev
mount --rbind /proc /mnt/proc
mount --rbind /sys /mnt/sys
mount -t tmpfs -o mode=755 tmpfs /mnt/run
if [ -d /sys/firmware/efi ] && ! mountpoint -q /sys/firmware/efi/efivars 2>/dev/null; then
  mount -t efivarfs efivarfs /mnt/sys/firmware/efi/efivars 2>/dev/null || true
fi
system=/nix/var/nix/profiles/system
if [ -x "/mnt$system/activate" ]; then
  # As nixos-enter: activation creates /etc and users; its failure is not fatal.
  IN_NIXOS_ENTER=1 chroot /mnt "$system/activate" >&2 || echo "activation exited $? (ignored, as nixos-enter does)" >&2
fi
NIXOS_INSTALL_BOOTLOADER=1 chroot /mnt "$system/bin/switch-to-configuration" boot
`
	if err := f.runScript(ctx, "install", "switch-to-configuration boot", boot); err != nil {
		return err
	}

	if len(f.o.DiskEncryptionKey) > 0 {
		var rm []string
		for _, k := range f.o.DiskEncryptionKey {
			rm = append(rm, target.ShellQuote(k.A))
		}
		if _, err := f.conn.Output(ctx, "rm -f "+strings.Join(rm, " "), nil); err != nil {
			return fmt.Errorf("remove the key files from the installer: %w", err)
		}
		f.info("install", "removed the key files from the installer")
	}
	return nil
}

func sendSummary(s install.SendStats) string {
	return fmt.Sprintf("%d paths: %d already there, %d sent (%s of NAR, %s on the wire)",
		s.Paths, s.Present, s.Sent, event.Bytes(int64(s.NarBytes)), event.Bytes(int64(s.WireBytes)))
}

// uploadVerified uploads local to remote (mode 0755) and checks its sha256 there.
func (f *flow) uploadVerified(ctx context.Context, local, remote string) error {
	data, err := os.ReadFile(local)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	if _, err := f.conn.Output(ctx, "mkdir -p "+target.ShellQuote(filepath.Dir(remote)), nil); err != nil {
		return fmt.Errorf("upload %s: %w", remote, err)
	}
	if err := f.conn.Upload(ctx, bytes.NewReader(data), int64(len(data)), remote, 0o755, nil); err != nil {
		return err
	}
	out, err := f.conn.Output(ctx, "sha256sum "+target.ShellQuote(remote), nil)
	if err != nil {
		return fmt.Errorf("check %s: %w", remote, err)
	}
	if got := strings.Fields(string(out)); len(got) == 0 || got[0] != want {
		return fmt.Errorf("upload %s: sha256 on the target is %q, want %s", remote, strings.TrimSpace(string(out)), want)
	}
	return nil
}

// runWithInput runs script as root with input on a pipe (the script itself
// is passed as an argument file, so the input stays the command's).
func (f *flow) runWithInput(ctx context.Context, phase, name, script string, input string) error {
	cmd := fmt.Sprintf(`t=$(mktemp /tmp/nixos-via-script.XXXXXX) && printf '%%s' %s > "$t" && sh "$t"; st=$?; rm -f "$t"; exit $st`, target.ShellQuote(script))
	var out bytes.Buffer
	err := f.conn.Run(ctx, cmd, strings.NewReader(input), &out, &out)
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line != "" {
			f.info(phase, "%s", line)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// extraFiles streams --extra-files DIR into /mnt as a tar owned by root,
// modes kept, symlinks as links.
func (f *flow) extraFiles(ctx context.Context) error {
	dir := f.o.ExtraFiles
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--extra-files %s: not a directory", dir)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeRootTar(pw, dir)) }()
	f.step("install", "copying extra files from %s", dir)
	if _, err := f.conn.Output(ctx, "tar -C /mnt -xf - && chmod 755 /mnt", pr); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("--extra-files %s: %w", dir, err)
	}
	return nil
}

// writeRootTar writes dir's tree as a tar with every entry owned by 0:0.
func writeRootTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			file, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, file)
			file.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
