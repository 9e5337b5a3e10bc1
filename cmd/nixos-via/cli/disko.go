package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/sequence"
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

// diskoFlags are the flags of the disko subcommand.
type diskoFlags struct {
	layoutFile, flake, modeName, root        string
	printScript, printConfig, validate, help bool
	timeout                                  time.Duration
}

func (d *diskoFlags) parse(args []string) (*pflag.FlagSet, error) {
	fs := pflag.NewFlagSet("nixos-via disko", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&d.layoutFile, "layout", "", "layout file: .json or a pure .nix ('-' = JSON on stdin)")
	fs.StringVar(&d.flake, "flake", "", "REF#HOST: read nixosConfigurations.HOST.config.disko.devices")
	fs.StringVar(&d.modeName, "mode", "destroy,format,mount", "destroy,format,mount | format | format,mount | mount | unmount | destroy")
	fs.StringVar(&d.root, "root-mountpoint", "/mnt", "where the layout is mounted")
	fs.DurationVar(&d.timeout, "device-timeout", 120*time.Second, "how long the script waits for each device")
	fs.BoolVar(&d.printScript, "print", false, "print the script")
	fs.BoolVar(&d.printConfig, "print-config", false, "print the NixOS configuration the layout implies")
	fs.BoolVar(&d.validate, "validate", false, "only validate the layout")
	fs.BoolVarP(&d.help, "help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return fs, usagef("%v", err)
	}
	return fs, nil
}

// check refuses a bad combination and returns the mode.
func (d *diskoFlags) check(fs *pflag.FlagSet) (disko.Mode, error) {
	if fs.NArg() > 0 {
		return 0, usagef("unexpected argument %q", fs.Arg(0))
	}
	if (d.layoutFile == "") == (d.flake == "") {
		return 0, usagef("give exactly one of --layout FILE and --flake REF#HOST")
	}
	outputs := 0
	for _, b := range []bool{d.printScript, d.printConfig, d.validate} {
		if b {
			outputs++
		}
	}
	if outputs > 1 {
		return 0, usagef("--print, --print-config and --validate exclude each other")
	}
	mode, err := disko.ParseMode(d.modeName)
	if err != nil {
		return 0, usagef("--mode: %v", err)
	}
	if !filepath.IsAbs(d.root) {
		return 0, usagef("--root-mountpoint %q is not an absolute path", d.root)
	}
	if d.timeout <= 0 {
		return 0, usagef("--device-timeout must be positive")
	}
	return mode, nil
}

// runDisko is `nixos-via disko …` (args exclude the word "disko"): the
// layout read (sequence.ReadLayout), validated and
// rendered by package disko. Exit codes: 0 ok,
// 1 invalid layout or failure, 2 usage error.
func runDisko(ctx context.Context, env Env, args []string) error {
	fail := func(err error) error {
		return &commandError{prefix: "nixos-via disko", help: "Run 'nixos-via disko --help' for the flags.\n", err: err}
	}
	var d diskoFlags
	fs, err := d.parse(args)
	if err != nil {
		return fail(err)
	}
	if d.help {
		fmt.Fprint(env.Stdout, diskoUsage)
		return nil
	}
	mode, err := d.check(fs)
	if err != nil {
		return fail(err)
	}
	src := sequence.LayoutSource{File: d.layoutFile, Flake: d.flake, Stdin: env.Stdin}
	layout, err := sequence.ReadLayout(ctx, src)
	if err != nil {
		return fail(err)
	}
	if err := d.output(env, src.Name(), layout, mode); err != nil {
		return fail(err)
	}
	return nil
}

// output prints what the flags ask for.
func (d *diskoFlags) output(env Env, source string, layout *disko.Layout, mode disko.Mode) error {
	opts := disko.RenderOptions{RootMountpoint: d.root, DeviceTimeout: d.timeout}
	invalid := func(err error) error { return fmt.Errorf("invalid layout %s: %v", source, err) }
	switch {
	case d.validate:
		// Rendering is part of validation: a layout that cannot be
		// rendered is not valid.
		if _, err := layout.Plan(mode, opts); err != nil {
			return invalid(err)
		}
		fmt.Fprintf(env.Stdout, "%s: valid (%s)\n", source, layout.Summary())
	case d.printConfig:
		b, err := layout.NixOSJSON()
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s\n", b)
	case d.printScript:
		script, err := layout.Script(mode, opts)
		if err != nil {
			return invalid(err)
		}
		fmt.Fprint(env.Stdout, script)
	default:
		if _, err := layout.Plan(mode, opts); err != nil {
			return invalid(err)
		}
		fmt.Fprint(env.Stdout, layout.WipeSummary(mode))
		fmt.Fprintln(env.Stdout, "Nothing was run. Running a layout on a target belongs to the install flow: nixos-via --flake REF#HOST [user@]HOST; use --print to get the script.")
	}
	return nil
}
