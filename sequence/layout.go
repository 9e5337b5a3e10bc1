package sequence

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// LayoutFromFile reads the value of disko.devices from a .json file (or
// stdin for "-"), or evaluates a pure .nix file that holds it.
func LayoutFromFile(ctx context.Context, name string, stdin io.Reader) ([]byte, error) {
	switch {
	case name == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	case strings.HasSuffix(name, ".json"):
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read layout: %w", err)
		}
		return b, nil
	case strings.HasSuffix(name, ".nix"):
		if _, err := os.Stat(name); err != nil {
			return nil, fmt.Errorf("read layout: %w", err)
		}
		return nix.CLI{}.InstantiateLayout(ctx, name)
	}
	return nil, phase.Usagef("--layout %q: want a .json or .nix file, or - for JSON on stdin", name)
}

// LayoutFromFlake evaluates nixosConfigurations.HOST.config.disko.devices
// of flake REF#HOST.
func LayoutFromFlake(ctx context.Context, flake string) ([]byte, error) {
	ref, host, ok := strings.Cut(flake, "#")
	if !ok || ref == "" || host == "" {
		return nil, phase.Usagef("--flake %q: want REF#HOST", flake)
	}
	if _, err := exec.LookPath("nix"); err != nil {
		return nil, fmt.Errorf("--flake needs nix on PATH: %w", err)
	}
	return nix.CLI{}.EvalLayout(ctx, nix.LayoutAttr(ref, fmt.Sprintf("nixosConfigurations.%q.config", host)))
}
