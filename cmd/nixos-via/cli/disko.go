package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/nix"
)

const diskoUsage = `Usage: nixos-via disko (--layout FILE | --flake REF#HOST) [--mode MODE] [--root-mountpoint DIR]
                      [--print | --print-config | --validate]

Renders a disko layout natively. FILE is the JSON value of disko.devices
(as 'nix eval --json' prints it; '-' reads stdin) or a pure .nix file
(evaluated with nix-instantiate). --flake reads
nixosConfigurations.HOST.config.disko.devices with 'nix eval --json'.

  --print          print the POSIX sh script for MODE (run it as root;
                   destroy modes ask for confirmation unless given
                   --yes-wipe-all-disks)
  --print-config   print the NixOS configuration the layout implies (JSON)
  --validate       only validate the layout
  (none)           print which disks MODE would wipe

Modes: destroy,format,mount (default), format, format,mount, mount, unmount, destroy.
Nothing runs here: running a layout on a target belongs to the install flow
(nixos-via --flake REF#HOST [user@]HOST).
`

// runDisko is `nixos-via disko …` (args exclude the word "disko").
// Exit codes: 0 ok, 1 invalid layout or failure, 2 usage error.
func runDisko(ctx context.Context, env Env, args []string) int {
	fs := pflag.NewFlagSet("nixos-via disko", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var layoutFile, flake, modeName, root string
	var printScript, printConfig, validate, help bool
	var timeout time.Duration
	fs.StringVar(&layoutFile, "layout", "", "layout file: .json or a pure .nix ('-' = JSON on stdin)")
	fs.StringVar(&flake, "flake", "", "REF#HOST: read nixosConfigurations.HOST.config.disko.devices")
	fs.StringVar(&modeName, "mode", "destroy,format,mount", "destroy,format,mount | format | format,mount | mount | unmount | destroy")
	fs.StringVar(&root, "root-mountpoint", "/mnt", "where the layout is mounted")
	fs.DurationVar(&timeout, "device-timeout", 120*time.Second, "how long the script waits for each device")
	fs.BoolVar(&printScript, "print", false, "print the script")
	fs.BoolVar(&printConfig, "print-config", false, "print the NixOS configuration the layout implies")
	fs.BoolVar(&validate, "validate", false, "only validate the layout")
	fs.BoolVarP(&help, "help", "h", false, "show this help")
	usage := func(format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "nixos-via disko: "+format+"\n", a...)
		fmt.Fprintln(env.Stderr, "Run 'nixos-via disko --help' for the flags.")
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		return usage("%v", err)
	}
	if help {
		fmt.Fprint(env.Stdout, diskoUsage)
		return ExitOK
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	if (layoutFile == "") == (flake == "") {
		return usage("give exactly one of --layout FILE and --flake REF#HOST")
	}
	outputs := 0
	for _, b := range []bool{printScript, printConfig, validate} {
		if b {
			outputs++
		}
	}
	if outputs > 1 {
		return usage("--print, --print-config and --validate exclude each other")
	}
	mode, err := disko.ParseMode(modeName)
	if err != nil {
		return usage("--mode: %v", err)
	}
	if !filepath.IsAbs(root) {
		return usage("--root-mountpoint %q is not an absolute path", root)
	}
	if timeout <= 0 {
		return usage("--device-timeout must be positive")
	}
	var data []byte
	var source string
	if layoutFile != "" {
		source = layoutFile
		data, err = readLayoutFile(ctx, env, layoutFile)
	} else {
		source = flake
		data, err = evalFlakeLayout(ctx, flake)
	}
	if err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			return usage("%v", err)
		}
		fmt.Fprintf(env.Stderr, "nixos-via disko: %v\n", err)
		return ExitFailure
	}
	layout, err := disko.Parse(unwrapDiskoDevices(data))
	if err != nil {
		fmt.Fprintf(env.Stderr, "nixos-via disko: invalid layout %s:\n", source)
		var ve *disko.ValidationError
		if errors.As(err, &ve) {
			for _, is := range ve.Issues {
				fmt.Fprintf(env.Stderr, "  %s\n", is)
			}
		} else {
			fmt.Fprintf(env.Stderr, "  %v\n", err)
		}
		return ExitFailure
	}
	opts := disko.RenderOptions{RootMountpoint: root, DeviceTimeout: timeout}
	switch {
	case validate:
		// Rendering is part of validation: a layout that cannot be
		// rendered is not valid.
		if _, err := layout.Plan(mode, opts); err != nil {
			fmt.Fprintf(env.Stderr, "nixos-via disko: invalid layout %s: %v\n", source, err)
			return ExitFailure
		}
		fmt.Fprintf(env.Stdout, "%s: valid (%s)\n", source, layoutSummary(layout))
	case printConfig:
		b, err := layout.NixOSJSON()
		if err != nil {
			fmt.Fprintf(env.Stderr, "nixos-via disko: %v\n", err)
			return ExitFailure
		}
		fmt.Fprintf(env.Stdout, "%s\n", b)
	case printScript:
		script, err := layout.Script(mode, opts)
		if err != nil {
			fmt.Fprintf(env.Stderr, "nixos-via disko: invalid layout %s: %v\n", source, err)
			return ExitFailure
		}
		fmt.Fprint(env.Stdout, script)
	default:
		if _, err := layout.Plan(mode, opts); err != nil {
			fmt.Fprintf(env.Stderr, "nixos-via disko: invalid layout %s: %v\n", source, err)
			return ExitFailure
		}
		writeWipeSummary(env.Stdout, layout, mode)
		fmt.Fprintln(env.Stdout, "Nothing was run. Running a layout on a target belongs to the install flow: nixos-via --flake REF#HOST [user@]HOST; use --print to get the script.")
	}
	return ExitOK
}

func layoutSummary(l *disko.Layout) string {
	var parts []string
	add := func(n int, what string) {
		if n == 1 {
			parts = append(parts, "1 "+what)
		} else if n > 1 {
			parts = append(parts, fmt.Sprintf("%d %ss", n, what))
		}
	}
	add(len(l.Disks), "disk")
	add(len(l.MDArrays), "md array")
	add(len(l.VGs), "volume group")
	add(len(l.Zpools), "zpool")
	add(len(l.Bcachefs), "bcachefs filesystem")
	add(len(l.Nodevs), "nodev mount")
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}

// writeWipeSummary lists the disks mode would wipe.
func writeWipeSummary(w io.Writer, l *disko.Layout, mode disko.Mode) {
	targets := l.WipeTargets()
	switch {
	case mode != disko.ModeDestroyFormatMount && mode != disko.ModeDestroy:
		fmt.Fprintf(w, "Mode %s wipes no disk.\n", mode)
	case len(targets) == 0:
		fmt.Fprintf(w, "Mode %s wipes no disk (every disk has destroy = false).\n", mode)
	default:
		fmt.Fprintf(w, "Mode %s WIPES these disks:\n", mode)
		for _, t := range targets {
			fmt.Fprintf(w, "  %s  (disk.%s)\n", t.Device, t.Name)
		}
	}
}

// readLayoutFile reads a .json layout (or stdin for "-") or evaluates a
// pure .nix file.
func readLayoutFile(ctx context.Context, env Env, name string) ([]byte, error) {
	switch {
	case name == "-":
		b, err := io.ReadAll(env.Stdin)
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
	return nil, usagef("--layout %q: want a .json or .nix file, or - for JSON on stdin", name)
}

// evalFlakeLayout reads nixosConfigurations.HOST.config.disko.devices.
func evalFlakeLayout(ctx context.Context, flake string) ([]byte, error) {
	ref, host, ok := strings.Cut(flake, "#")
	if !ok || ref == "" || host == "" {
		return nil, usagef("--flake %q: want REF#HOST", flake)
	}
	if _, err := exec.LookPath("nix"); err != nil {
		return nil, fmt.Errorf("--flake needs nix on PATH: %w", err)
	}
	return nix.CLI{}.EvalLayout(ctx, flakeLayoutAttr(ref, fmt.Sprintf("nixosConfigurations.%q.config", host)))
}

// flakeLayoutAttr names the disko layout of the configuration at attr
// (e.g. nixosConfigurations."h".config) in flake ref.
func flakeLayoutAttr(ref, attr string) string { return ref + "#" + attr + ".disko.devices" }

// unwrapDiskoDevices accepts a file holding { disko.devices = …; } (as
// disko's example files are written) as well as the bare value.
func unwrapDiskoDevices(data []byte) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil || len(top) != 1 {
		return data
	}
	raw, ok := top["disko"]
	if !ok {
		return data
	}
	var d map[string]json.RawMessage
	if json.Unmarshal(raw, &d) != nil || len(d) != 1 || d["devices"] == nil {
		return data
	}
	return d["devices"]
}
