package install

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// AgentBinary is the local file uploaded as the agent: path (--agent), or
// this executable when path is "", checked to be static and built for the
// target's architecture (arch as `uname -m` prints it).
func AgentBinary(path, arch string) (string, error) {
	p := path
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
	want := goArch(arch)
	got := map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_386: "386", elf.EM_RISCV: "riscv64"}[ef.Machine]
	if got != want {
		return "", fmt.Errorf("agent %s is for %s but the target is %s (%s); pass --agent with a build for it (GOARCH=%s CGO_ENABLED=0 go build ./cmd/nixos-via)",
			p, got, arch, want, want)
	}
	return p, nil
}

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

// FindNixStore is the system's own nix-store, which loads the
// registration inside the installed root so the database matches the
// system's Nix: toplevel's sw/bin/nix-store, else one in the closure; ""
// when there is none.
func FindNixStore(toplevel string, closure []nix.PathInfo) string {
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
