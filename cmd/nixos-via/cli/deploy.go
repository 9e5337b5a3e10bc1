package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/nixos-via/nixos-via/deploy"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/sequence"
)

const deployUsage = `Usage: nixos-via deploy (--flake REF#NAME | --system PATH) [flags] [user@]HOST

Switches the running NixOS host to the system built here: copies what its
Nix lacks, adds a generation to /nix/var/nix/profiles/system and runs
switch-to-configuration ACTION under a supervisor on the host that
outlives the SSH session. With magic rollback (the default) the host
waits --confirm-timeout for a confirmation over a brand-new SSH
connection (after the --check commands) and restores the previous
generation itself without one.

Exit codes: 0 deployed; 10 rolled back to the previous generation;
11 failed before the host's system changed; 12 failed and the host may
run the new system (no magic rollback, or the rollback failed); 2 usage;
3 unreachable; 4 host key.
`

// gDeploy is the group of deploy's own flags.
const gDeploy = "Deploy"

// runDeploy is `nixos-via deploy [flags] [user@]HOST`.
func runDeploy(ctx context.Context, env Env, args []string) error {
	o := &Options{}
	var c conn
	var system string
	var noMagic bool
	d := deploy.Options{Jobs: 2, ConfirmTimeout: deploy.DefaultConfirmTimeout}
	table := append(c.flags(), c.timeoutFlag(),
		flagSpec{name: "flake", short: "f", group: gBuild, arg: "REF#NAME", help: "flake to deploy: nixosConfigurations.NAME of REF", to: o.flake},
		flagSpec{name: "system", group: gBuild, arg: "PATH", help: "deploy this system toplevel, already built", to: &system},
		flagSpec{name: "option", group: gBuild, arg: "KEY VALUE", help: "a Nix option for every nix call (repeatable)", to: o.nixOptions},
		flagSpec{name: "print-build-logs", short: "L", group: gBuild, help: "print full build logs", to: &o.printBuildLog},
		flagSpec{name: "action", group: gDeploy, arg: "ACTION", help: "switch-to-configuration's action: switch (default), boot, test or dry-activate", to: &d.Action},
		flagSpec{name: "confirm-timeout", group: gDeploy, arg: "DUR", help: "how long the host waits for the confirmation before it rolls back (default 30s)", to: duration(&d.ConfirmTimeout, "confirm-timeout")},
		flagSpec{name: "check", group: gDeploy, arg: "CMD", help: "run CMD on the host (sh -c, as root) before confirming; a failure rolls back (repeatable)", to: func(v []string) error { d.Checks = v; return nil }},
		flagSpec{name: "no-magic-rollback", group: gDeploy, help: "switch without waiting for a confirmation (a failing switch then stays as it is)", to: &noMagic},
		flagSpec{name: "copy-jobs", group: gDeploy, arg: "N", help: "parallel streams for the closure copy (default 2)", to: o.copyJobs},
		flagSpec{name: "agent", group: gDeploy, arg: "FILE", help: "static nixos-via binary to run on the host (default: this one)", to: &o.Agent},
		flagSpec{name: "json", group: gOut, help: "print one JSON event per line on stdout instead of progress text", to: &o.JSON},
		flagSpec{name: "debug", group: gOut, help: "print every remote command", to: &c.Debug},
		flagSpec{name: "help", short: "h", group: gOut, help: "show this help", to: &o.help})
	_, help, err := parseFlags(table, args, c.host)
	if help {
		fmt.Fprint(env.Stdout, deployUsage)
		writeFlagGroups(env.Stdout, table, []string{gBuild, gDeploy, gTarget, gOut})
		return nil
	}
	if err == nil && (o.Flake == "") == (system == "") {
		err = usagef("give one of --flake REF#NAME and --system PATH")
	}
	if err == nil && c.Destination == "" {
		err = usagef("no host given")
	}
	d.MagicRollback = !noMagic
	if err == nil && o.CopyJobs > 0 {
		d.Jobs = o.CopyJobs
	}
	if err == nil {
		err = d.Check()
	}
	if err != nil {
		return &commandError{prefix: "nixos-via deploy", help: deployUsage, err: err}
	}
	if o.printBuildLog {
		o.Nix.Log = env.Stderr
	}
	ui := newUI(env, o.JSON)
	plan := sequence.Plan{Nix: o.Nix, Flake: o.Flake, FlakeRef: o.FlakeRef, FlakeAttr: o.FlakeAttr}
	if system != "" {
		plan.StorePaths = &sequence.StorePaths{System: system}
	}
	if d.Toplevel, d.Closure, err = sequence.BuildSystem(ctx, plan, ui); err != nil {
		return &phase.Error{Phase: phase.Build, Err: err}
	}
	topts, err := c.resolve(env, func(m string) { fmt.Fprintln(env.Stderr, m) })
	if err != nil {
		return err
	}
	cn, facts, err := sequence.Connect(ctx, topts, home(env), c.Timeout)
	if err != nil {
		return err
	}
	defer cn.Close()
	if d.Agent, err = install.AgentBinary(o.Agent, facts.Arch); err != nil {
		return &deploy.Error{Err: err}
	}
	d.Home, d.SudoPassword = home(env), facts.SudoPassword
	start := time.Now()
	err = deploy.Run(ctx, cn, ui, d)
	fmt.Fprintf(env.Stderr, "nixos-via deploy: %s after %s\n", deployOutcome(err), time.Since(start).Round(time.Second))
	return err
}

// deployOutcome is the last line of a deploy.
func deployOutcome(err error) string {
	switch ExitCode(err) {
	case ExitOK:
		return "deployed"
	case ExitRolledBack:
		return "rolled back"
	case ExitDeployUnchanged:
		return "failed, nothing changed"
	}
	return "failed"
}
