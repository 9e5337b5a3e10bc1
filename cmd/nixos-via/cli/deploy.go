package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/deploy"
	"github.com/nixos-via/nixos-via/fleet"
	"github.com/nixos-via/nixos-via/fleet/flakehosts"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/flagtable"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/sequence"
)

const deployUsage = `Usage: nixos-via deploy (--flake REF#NAME | --system PATH) [flags] [user@]HOST
       nixos-via deploy (--flake REF#NAME | --system PATH) [flags] NAME=[user@]host[:port]...
       nixos-via deploy --flake REF[#NODE] [--on SEL] [flags]

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

With NAME=[user@]host[:port] pairs, the system is built once and
deployed to every host (or those --on picks) in parallel, each over its
own connection; one host's failure never stops another's. A table of
host, result, time and bytes sent ends the run; the exit code is the
worst host's (12 > 11 > 10 > others). Without a host, the hosts are
REF's deploy.nodes (deploy-rs) and colmenaHive nodes (colmena), each
with its own system; #NODE picks one, as in deploy-rs's REF#NODE.
`

// gDeploy is the group of deploy's own flags.
const gDeploy = "Deploy"

// runDeploy is `nixos-via deploy [flags] [user@]HOST`.
func runDeploy(ctx context.Context, env Env, args []string) error {
	o := &Options{}
	var c conn
	var system string
	var pairs []string
	var on string
	parallel := 10
	d := deploy.Options{Jobs: 2, ConfirmTimeout: deploy.DefaultConfirmTimeout, MagicRollback: true}
	table := append(c.flags(), c.timeoutFlag(),
		flagtable.Flag{Name: "flake", Short: "f", Group: gBuild, Arg: "REF#NAME", Help: "flake to deploy: nixosConfigurations.NAME of REF (REF[#NODE] alone: its fleet)", To: &o.Flake},
		flagtable.Flag{Name: "system", Group: gBuild, Arg: "PATH", Help: "deploy this system toplevel, already built", To: &system},
		flagtable.Flag{Name: "option", Group: gBuild, Arg: "KEY VALUE", Help: "a Nix option for every nix call (repeatable)", To: o.nixOptions},
		flagtable.Flag{Name: "print-build-logs", Short: "L", Group: gBuild, Help: "print full build logs", To: &o.printBuildLog},
		flagtable.Flag{Name: "action", Group: gDeploy, Arg: "ACTION", Help: "switch-to-configuration's action: switch (default), boot, test or dry-activate", To: &d.Action},
		flagtable.Flag{Name: "confirm-timeout", Group: gDeploy, Arg: "DUR", Help: "how long the host waits for the confirmation before it rolls back (default 30s)", To: flagtable.Duration(&d.ConfirmTimeout, "confirm-timeout")},
		flagtable.Flag{Name: "check", Group: gDeploy, Arg: "CMD", Help: "run CMD on the host (sh -c, as root) before confirming; a failure rolls back (repeatable)", To: func(v []string) error { d.Checks = v; return nil }},
		flagtable.Flag{Name: "no-magic-rollback", Group: gDeploy, Help: "switch without waiting for a confirmation (a failing switch then stays as it is)", To: func() error { d.MagicRollback = false; return nil }},
		flagtable.Flag{Name: "copy-jobs", Group: gDeploy, Arg: "N", Help: "parallel streams for the closure copy (default 2)", To: flagtable.Count(&d.Jobs, "copy-jobs", 1, 64)},
		flagtable.Flag{Name: "agent", Group: gDeploy, Arg: "FILE", Help: "static nixos-via binary to run on the host (default: this one)", To: &o.Agent},
		flagtable.Flag{Name: "on", Group: gDeploy, Arg: "SEL", Help: "deploy only to these of the hosts: names, globs, @tags, comma-separated", To: &on},
		flagtable.Flag{Name: "parallel", Group: gDeploy, Arg: "N", Help: "hosts deployed at once (default 10)", To: flagtable.Count(&parallel, "--parallel", 1, 1000)},
		flagtable.Flag{Name: "json", Group: gOut, Help: "print one JSON event per line on stdout instead of progress text", To: &o.JSON},
		flagtable.Flag{Name: "debug", Group: gOut, Help: "print every remote command", To: &c.Debug},
		flagtable.Flag{Name: "help", Short: "h", Group: gOut, Help: "show this help", To: &o.help})
	_, help, err := flagtable.Parse(table, args, func(pos []string) error {
		if len(pos) == 1 && !strings.Contains(pos[0], "=") {
			return c.host(pos)
		}
		pairs = pos
		return nil
	})
	if help {
		fmt.Fprint(env.Stdout, deployUsage)
		flagtable.WriteGroups(env.Stdout, table, []string{gBuild, gDeploy, gTarget, gOut})
		return nil
	}
	if err == nil && (o.Flake == "") == (system == "") {
		err = usagef("give one of --flake REF#NAME and --system PATH")
	}
	plan := sequence.Plan{Nix: o.Nix, Flake: o.Flake}
	var hosts []fleet.Host
	if err == nil {
		hosts, err = flakehosts.Targets(ctx, &plan, c.Destination, pairs, on)
	}
	if err == nil {
		err = d.Check()
	}
	if err != nil {
		return &commandError{prefix: "nixos-via deploy", help: deployUsage, err: err}
	}
	if o.printBuildLog {
		plan.Nix.Log = env.Stderr
	}
	ui := newUI(env, o.JSON)
	if system != "" {
		plan.StorePaths = &sequence.StorePaths{System: system}
	}
	systems, err := flakehosts.Build(ctx, plan, hosts, ui)
	if err != nil {
		return &phase.Error{Phase: phase.Build, Err: err}
	}
	if len(hosts) > 0 {
		sink := event.Sink(ui)
		if !o.JSON {
			sink = fleet.Lines(ui)
		}
		res := fleet.Run(ctx, hosts, parallel, sink, func(ctx context.Context, h fleet.Host, s event.Sink) (int64, error) {
			hc := c
			hc.Destination, hc.SSHOptions = h.Destination(), append(append([]string(nil), c.SSHOptions...), h.SSHOptions...)
			return deployTo(ctx, env, hc, o.Agent, systems[h.System].Deploy(d), s, func(m string) { s.Emit(event.Event{Kind: event.Warn, Msg: m}) })
		}, ExitCode)
		fleet.Summary(env.Stderr, res)
		return fleet.Err(res)
	}
	start := time.Now()
	_, err = deployTo(ctx, env, c, o.Agent, systems[""].Deploy(d), ui, func(m string) { fmt.Fprintln(env.Stderr, m) })
	fmt.Fprintf(env.Stderr, "nixos-via deploy: %s after %s\n", deployOutcome(err), time.Since(start).Round(time.Second))
	return err
}

// deployTo deploys d to the host c names; it returns the bytes sent.
func deployTo(ctx context.Context, env Env, c conn, agent string, d deploy.Options, sink event.Sink, warn func(string)) (int64, error) {
	topts, err := c.resolve(env, warn)
	if err != nil {
		return 0, err
	}
	return flakehosts.DeployTo(ctx, topts, home(env), c.Timeout, agent, d, sink)
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
