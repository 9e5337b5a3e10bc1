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
	mode                                     disko.Mode
}

// parse parses args and refuses a bad combination.
func (d *diskoFlags) parse(args []string) error {
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
	var err error
	switch err = fs.Parse(args); {
	case err != nil:
		return usagef("%v", err)
	case d.help:
		return nil
	case fs.NArg() > 0:
		return usagef("unexpected argument %q", fs.Arg(0))
	case (d.layoutFile == "") == (d.flake == ""):
		return usagef("give exactly one of --layout FILE and --flake REF#HOST")
	case btoi(d.printScript)+btoi(d.printConfig)+btoi(d.validate) > 1:
		return usagef("--print, --print-config and --validate exclude each other")
	}
	if d.mode, err = disko.ParseMode(d.modeName); err != nil {
		return usagef("--mode: %v", err)
	}
	if !filepath.IsAbs(d.root) {
		return usagef("--root-mountpoint %q is not an absolute path", d.root)
	}
	if d.timeout <= 0 {
		return usagef("--device-timeout must be positive")
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runDisko is `nixos-via disko …` (args exclude the word "disko"): the
// layout read (sequence.ReadLayout), validated and
// rendered by package disko. Exit codes: 0 ok,
// 1 invalid layout or failure, 2 usage error.
func runDisko(ctx context.Context, env Env, args []string) error {
	var d diskoFlags
	err := d.parse(args)
	switch {
	case err != nil:
	case d.help:
		fmt.Fprint(env.Stdout, diskoUsage)
		return nil
	default:
		err = d.output(ctx, env)
	}
	if err != nil {
		return &commandError{prefix: "nixos-via disko", help: "Run 'nixos-via disko --help' for the flags.\n", err: err}
	}
	return nil
}

// output reads the layout and prints what the flags ask for.
func (d *diskoFlags) output(ctx context.Context, env Env) error {
	src := sequence.LayoutSource{File: d.layoutFile, Flake: d.flake, Stdin: env.Stdin}
	layout, err := sequence.ReadLayout(ctx, src)
	if err != nil {
		return err
	}
	source := src.Name()
	opts := disko.RenderOptions{RootMountpoint: d.root, DeviceTimeout: d.timeout}
	invalid := func(err error) error { return fmt.Errorf("invalid layout %s: %v", source, err) }
	switch {
	case d.printConfig:
		b, err := layout.NixOSJSON()
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s\n", b)
		return nil
	case d.printScript:
		script, err := layout.Script(d.mode, opts)
		if err != nil {
			return invalid(err)
		}
		fmt.Fprint(env.Stdout, script)
		return nil
	}
	// Rendering is part of validation: a layout that cannot be rendered
	// is not valid.
	if _, err := layout.Plan(d.mode, opts); err != nil {
		return invalid(err)
	}
	if d.validate {
		fmt.Fprintf(env.Stdout, "%s: valid (%s)\n", source, layout.Summary())
		return nil
	}
	fmt.Fprint(env.Stdout, layout.WipeSummary(d.mode))
	fmt.Fprintln(env.Stdout, "Nothing was run. Running a layout on a target belongs to the install flow: nixos-via --flake REF#HOST [user@]HOST; use --print to get the script.")
	return nil
}
