package flakehosts

import (
	"context"
	"time"

	"github.com/nixos-via/nixos-via/deploy"
	"github.com/nixos-via/nixos-via/fleet"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/sequence"
)

// Targets is the hosts a deploy of p goes to: the NAME=[user@]host[:port]
// pairs (those on picks); else, without the one host dest, the fleet of
// p.Flake (Hosts); none for dest alone. Unless the hosts are the flake's
// fleet, p.Flake is REF#NAME and Targets sets p.FlakeRef and p.FlakeAttr
// (sequence.ParseFlake). A bad pair or selection, or no host at all, is a
// *phase.UsageError.
func Targets(ctx context.Context, p *sequence.Plan, dest string, pairs []string, on string) ([]fleet.Host, error) {
	var hosts []fleet.Host
	var err error
	if len(pairs) > 0 {
		if hosts, err = fleet.ParsePairs(pairs); err == nil {
			hosts, err = fleet.Select(hosts, on)
		}
		if err != nil {
			return nil, phase.Usagef("%v", err)
		}
	}
	if dest == "" && len(pairs) == 0 && p.Flake != "" {
		hosts, err = Hosts(ctx, p.Nix, p.Flake, on)
	} else if p.Flake != "" {
		p.FlakeRef, p.FlakeAttr, err = sequence.ParseFlake(p.Flake)
	}
	if err == nil && dest == "" && len(hosts) == 0 {
		err = phase.Usagef("no host given")
	}
	return hosts, err
}

// DeployTo connects to the host topts names (sequence.Connect, within
// timeout) and deploys d there (deploy.RunSent), with the agent binary
// install.AgentBinary picks for the host's arch; it returns the bytes
// sent.
func DeployTo(ctx context.Context, topts target.Options, home string, timeout time.Duration, agent string, d deploy.Options, sink event.Sink) (int64, error) {
	cn, facts, err := sequence.Connect(ctx, topts, home, timeout)
	if err != nil {
		return 0, err
	}
	defer cn.Close()
	if d.Agent, err = install.AgentBinary(agent, facts.Arch); err != nil {
		return 0, &deploy.Error{Err: err}
	}
	d.Home, d.SudoPassword = home, facts.SudoPassword
	return deploy.RunSent(ctx, cn, sink, d)
}
