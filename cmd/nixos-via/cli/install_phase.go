package cli

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// agentPath is where the agent binary lives on the target (tmpfs in the
// installer; removed by the reboot).
const agentPath = "/run/nixos-via/nixos-via"

// buildSystem builds (or takes from --store-paths) the toplevel and reads
// its closure, before anything on the target is touched.
func (f *flow) buildSystem(ctx context.Context) error {
	if f.o.StorePaths != nil {
		p, err := filepath.EvalSymlinks(f.o.StorePaths.System)
		if err != nil {
			return usagef("--store-paths: system %s: %v", f.o.StorePaths.System, err)
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
// extra files, ownership, host keys, bootloader, key removal.
func (f *flow) install(ctx context.Context) error {
	agent, err := f.agentBinary()
	if err != nil {
		return err
	}
	if err := install.UploadAgent(ctx, f.conn, f.ui, agent, agentPath); err != nil {
		return err
	}
	f.step("install", "copying the system closure into %s/nix/store", install.DefaultRoot)
	start := time.Now()
	stats, err := closure.Send(ctx, f.conn, f.closure, closure.SendOptions{Agent: agentPath, Root: install.DefaultRoot, Jobs: f.o.CopyJobs, Sink: f.ui})
	if err != nil {
		return fmt.Errorf("copy the closure: %w", err)
	}
	f.info("install", "%s in %s", sendSummary(stats), time.Since(start).Round(100*time.Millisecond))
	if err := install.Register(ctx, f.conn, f.ui, install.RegisterOptions{Root: install.DefaultRoot, NixStore: f.nixStore, Toplevel: f.toplevel, Closure: f.closure}); err != nil {
		return err
	}
	if f.o.ExtraFiles != "" {
		if err := install.ExtraFiles(ctx, f.conn, f.ui, f.o.ExtraFiles, install.DefaultRoot); err != nil {
			return err
		}
	}
	for _, c := range f.o.Chown {
		if err := install.Chown(ctx, f.conn, f.ui, install.DefaultRoot, c.Path, c.Owner); err != nil {
			return err
		}
	}
	if f.o.CopyHostKeys {
		if err := install.CopyHostKeys(ctx, f.conn, f.ui, install.DefaultRoot); err != nil {
			return err
		}
	}
	if err := install.InstallBootloader(ctx, f.conn, f.ui, install.DefaultRoot); err != nil {
		return err
	}
	var keys []string
	for _, k := range f.o.DiskEncryptionKey {
		keys = append(keys, k.Remote)
	}
	return install.RemoveKeyFiles(ctx, f.conn, f.ui, keys)
}

func sendSummary(s closure.SendStats) string {
	if s.Sent == 0 {
		return fmt.Sprintf("%d paths: all already there", s.Paths)
	}
	return fmt.Sprintf("%d paths: %d already there, %d sent (%s of NAR, %s on the wire, zstd %s)",
		s.Paths, s.Present, s.Sent, event.Bytes(int64(s.NarBytes)), event.Bytes(int64(s.WireBytes)), s.Compression)
}
