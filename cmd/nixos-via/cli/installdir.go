package cli

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/nixos-via/nixos-via/enter"
	"github.com/nixos-via/nixos-via/installdir"
	"github.com/nixos-via/nixos-via/internal/flagtable"
)

const installToDirUsage = `Usage: nixos-via install-to-dir (--flake REF#NAME | --system PATH) [flags] DIR

Installs the system into the directory DIR on this machine, as
nixos-install --root DIR does: the closure into DIR/nix/store (checked path
by path as over SSH), registered with the system's own nix-store, the
system profile set, DIR/etc/NIXOS; --extra-files and --chown as for a host;
the bootloader only with --bootloader. A re-run sends nothing DIR has.
Needs root.
`

// runInstallToDir is `nixos-via install-to-dir [flags] DIR`.
func runInstallToDir(ctx context.Context, env Env, args []string) error {
	o := &Options{}
	o.CopyJobs = 2
	var system string
	var bootloader bool
	// The flags it shares with the drop-in command line are declared there.
	shared := installFlags(o)
	table := append(flagtable.Pick(shared, "flake"), flagtable.Flag{Name: "system", Group: gBuild, Arg: "PATH", Help: "install this system toplevel, already built (as nixos-install --system)", To: &system})
	table = append(table, flagtable.Pick(shared, "print-build-logs", "option", "extra-files", "chown", "copy-jobs")...)
	table = append(table, flagtable.Flag{Name: "bootloader", Group: gInst, Help: "also install the bootloader (switch-to-configuration boot in a chroot of DIR, which writes DIR/boot)", To: &bootloader})
	table = append(table, flagtable.Pick(shared, "json", "help")...)
	var dir string
	_, help, err := flagtable.Parse(table, args, func(pos []string) error {
		if len(pos) != 1 {
			return usagef("want one directory, got %q", pos)
		}
		dir = pos[0]
		return nil
	})
	if help {
		fmt.Fprint(env.Stdout, installToDirUsage)
		flagtable.WriteGroups(env.Stdout, table, []string{gBuild, gInst, gOut})
		return nil
	}
	if err == nil {
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		return &commandError{prefix: "nixos-via install-to-dir", help: installToDirUsage, err: err}
	}
	if o.printBuildLog {
		o.Nix.Log = env.Stderr
	}
	return installdir.Run(ctx, newUI(env, o.JSON), installdir.Options{Root: dir, Nix: o.Nix, FlakeRef: o.FlakeRef, FlakeAttr: o.FlakeAttr,
		System: system, Jobs: o.CopyJobs, ExtraFiles: o.ExtraFiles, Chown: o.Chown, Bootloader: bootloader})
}

const enterUsage = `Usage: nixos-via enter [flags] DIR [-- COMMAND [ARG...]]

Runs COMMAND (default: a login shell) inside the NixOS root DIR, as
nixos-enter --root DIR does: in private mount, UTS and pid namespaces with
/dev, /proc, /sys and /run mounted, after the system's activation (in a
network namespace of its own). The mounts vanish with the command; none
of this machine's is touched. Needs root. Exits with COMMAND's status.
`

// gEnter is the one group of enter's flags.
const gEnter = "Flags"

// runEnter is `nixos-via enter [flags] DIR [-- CMD...]`.
func runEnter(_ context.Context, env Env, args []string) error {
	opts := enter.Options{Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr}
	var help bool
	table := []flagtable.Flag{
		{Name: "system", Group: gEnter, Arg: "PATH", Help: "the system (as the root sees it) to activate and take sw/bin from (default " + enter.DefaultSystem + ")", To: &opts.System},
		{Name: "no-activate", Group: gEnter, Help: "do not run the system's activation first", To: &opts.NoActivate},
		{Name: "boot", Group: gEnter, Help: "boot DIR as a container with systemd-nspawn instead (where it is installed)", To: &opts.Boot},
		{Name: "help", Short: "h", Group: gEnter, Help: "show this help", To: &help},
	}
	var pos []string
	fs, help, err := flagtable.Parse(table, args, func(p []string) error { pos = p; return nil })
	if help {
		fmt.Fprint(env.Stdout, enterUsage)
		flagtable.WriteGroups(env.Stdout, table, []string{gEnter})
		return nil
	}
	if err == nil {
		// Before "--" only DIR; after it the command, flags and all.
		before := len(pos)
		if dash := fs.ArgsLenAtDash(); dash >= 0 {
			before = dash
		}
		if before != 1 {
			err = usagef("want DIR, then -- and the command, got %q", pos[:before])
		} else {
			opts.Command = pos[1:]
			opts.Root, err = filepath.Abs(pos[0])
		}
	}
	if err != nil {
		return &commandError{prefix: "nixos-via enter", help: enterUsage, err: err}
	}
	return enter.Run(opts)
}
