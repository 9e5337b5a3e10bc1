package sequence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// LayoutSource is where the disko subcommand reads a layout from: File (a
// .json or pure .nix file, or "-" for JSON on Stdin) or else Flake
// (REF#HOST).
type LayoutSource struct {
	File  string
	Flake string
	Stdin io.Reader
}

// Name is the file or the flake, as messages name the layout.
func (s LayoutSource) Name() string {
	if s.File != "" {
		return s.File
	}
	return s.Flake
}

// ReadLayout reads and parses the layout from src. An invalid layout's
// error names it and lists each issue on a line of its own.
func ReadLayout(ctx context.Context, src LayoutSource) (*disko.Layout, error) {
	var data []byte
	var err error
	if src.File != "" {
		data, err = layoutFromFile(ctx, src.File, src.Stdin)
	} else {
		data, err = layoutFromFlake(ctx, src.Flake)
	}
	if err != nil {
		return nil, err
	}
	layout, err := disko.Parse(disko.UnwrapDevices(data))
	if err != nil {
		return nil, invalidLayout(src.Name(), err)
	}
	return layout, nil
}

// invalidLayout is the error of a layout that does not parse: its
// validation issues, or the error, each on an indented line.
func invalidLayout(name string, err error) error {
	msg := fmt.Sprintf("invalid layout %s:", name)
	var ve *disko.ValidationError
	if errors.As(err, &ve) {
		for _, is := range ve.Issues {
			msg += fmt.Sprintf("\n  %s", is)
		}
	} else {
		msg += fmt.Sprintf("\n  %v", err)
	}
	return errors.New(msg)
}

// layoutFromFile reads the value of disko.devices from a .json file (or
// stdin for "-"), or evaluates a pure .nix file that holds it.
func layoutFromFile(ctx context.Context, name string, stdin io.Reader) ([]byte, error) {
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

// layoutFromFlake evaluates nixosConfigurations.HOST.config.disko.devices
// of flake REF#HOST.
func layoutFromFlake(ctx context.Context, flake string) ([]byte, error) {
	ref, host, ok := strings.Cut(flake, "#")
	if !ok || ref == "" || host == "" {
		return nil, phase.Usagef("--flake %q: want REF#HOST", flake)
	}
	if _, err := exec.LookPath("nix"); err != nil {
		return nil, fmt.Errorf("--flake needs nix on PATH: %w", err)
	}
	return nix.CLI{}.EvalLayout(ctx, nix.LayoutAttr(ref, fmt.Sprintf("nixosConfigurations.%q.config", host)))
}
