package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/flagtable"
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
	layoutFile, flake, modeName string
	help                        bool
	shows                       int // how many of --print, --print-config and --validate
	report                      disko.Report
}

// show is a switch that asks for the view s.
func (d *diskoFlags) show(s disko.Show) func() error {
	return func() error { d.report.Show, d.shows = s, d.shows+1; return nil }
}

// parse parses args and refuses a bad combination.
func (d *diskoFlags) parse(args []string) error {
	d.modeName, d.report.Opts = "destroy,format,mount", disko.RenderOptions{RootMountpoint: "/mnt", DeviceTimeout: 120 * time.Second}
	_, help, err := flagtable.Parse([]flagtable.Flag{
		{Name: "layout", Arg: "FILE", Help: "layout file: .json or a pure .nix ('-' = JSON on stdin)", To: &d.layoutFile},
		{Name: "flake", Arg: "REF#HOST", Help: "REF#HOST: read nixosConfigurations.HOST.config.disko.devices", To: &d.flake},
		{Name: "mode", Arg: "MODE", Help: "destroy,format,mount | format | format,mount | mount | unmount | destroy", To: &d.modeName},
		{Name: "root-mountpoint", Arg: "DIR", Help: "where the layout is mounted", To: &d.report.Opts.RootMountpoint},
		{Name: "device-timeout", Arg: "DUR", Help: "how long the script waits for each device", To: &d.report.Opts.DeviceTimeout},
		{Name: "print", Help: "print the script", To: d.show(disko.ShowScript)},
		{Name: "print-config", Help: "print the NixOS configuration the layout implies", To: d.show(disko.ShowNixOS)},
		{Name: "validate", Help: "only validate the layout", To: d.show(disko.ShowValidity)},
		{Name: "help", Short: "h", Help: "show this help", To: &d.help},
	}, args, func(pos []string) error {
		if len(pos) > 0 {
			return usagef("unexpected argument %q", pos[0])
		}
		return nil
	})
	switch {
	case err != nil, help:
		return err
	case (d.layoutFile == "") == (d.flake == ""):
		return usagef("give exactly one of --layout FILE and --flake REF#HOST")
	case d.shows > 1:
		return usagef("--print, --print-config and --validate exclude each other")
	}
	if d.report.Mode, err = disko.ParseMode(d.modeName); err != nil {
		return usagef("--mode: %v", err)
	}
	if err := d.report.Opts.Check(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// runDisko is `nixos-via disko …` (args exclude the word "disko"): the
// layout read (sequence.ReadLayout), validated and shown by package
// disko. Exit codes: 0 ok, 1 invalid layout or failure, 2 usage error.
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
	if err == nil {
		err = layout.Write(env.Stdout, src.Name(), d.report)
	}
	if err == nil && d.report.Show == disko.ShowWipes {
		fmt.Fprintln(env.Stdout, "Nothing was run. Running a layout on a target belongs to the install flow: nixos-via --flake REF#HOST [user@]HOST; use --print to get the script.")
	}
	return err
}
