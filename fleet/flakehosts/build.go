package flakehosts

import (
	"context"
	"fmt"

	"github.com/nixos-via/nixos-via/deploy"
	"github.com/nixos-via/nixos-via/fleet"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/sequence"
)

// System is one built system: its toplevel and closure.
type System struct {
	Toplevel string
	Closure  []nix.PathInfo
}

// Deploy is d deploying s, or d as it is when s is the zero System (the
// host has no system of its own).
func (s System) Deploy(d deploy.Options) deploy.Options {
	if s.Toplevel != "" {
		d.Toplevel, d.Closure = s.Toplevel, s.Closure
	}
	return d
}

// Build builds the systems a run deploys, keyed by Host.System: the
// hosts' own (their System attributes of the flake p.Flake, REF or
// REF#NAME) with one nix build, so Nix builds each once and in parallel,
// each closure read as sequence.BuildSystem does; and, under "", p's one
// system (sequence.BuildSystem itself) when a host has none of its own or
// there are no hosts (a single [user@]HOST).
func Build(ctx context.Context, p sequence.Plan, hosts []fleet.Host, sink event.Sink) (map[string]System, error) {
	systems := map[string]System{}
	shared := len(hosts) == 0
	ref, _ := split(p.Flake)
	var attrs, installables []string
	seen := map[string]bool{}
	for _, h := range hosts {
		if h.System == "" {
			shared = true
		} else if !seen[h.System] {
			seen[h.System] = true
			attrs = append(attrs, h.System)
			installables = append(installables, ref+"#"+h.System)
		}
	}
	if shared {
		top, closure, err := sequence.BuildSystem(ctx, p, sink)
		if err != nil {
			return nil, err
		}
		systems[""] = System{Toplevel: top, Closure: closure}
	}
	if len(attrs) == 0 {
		return systems, nil
	}
	sink.Emit(event.Event{Phase: phase.Build, Kind: event.Step, Msg: fmt.Sprintf("building %d systems of %s", len(attrs), ref)})
	outs, err := p.Nix.Build(ctx, installables...)
	if err != nil {
		return nil, fmt.Errorf("build the systems: %w", err)
	}
	if len(outs) != len(attrs) {
		return nil, fmt.Errorf("build the systems: got %d outputs for %d systems", len(outs), len(attrs))
	}
	for i, attr := range attrs {
		q := sequence.Plan{Nix: p.Nix, StorePaths: &sequence.StorePaths{System: outs[i]}}
		top, closure, err := sequence.BuildSystem(ctx, q, sink)
		if err != nil {
			return nil, fmt.Errorf("system %s: %w", attr, err)
		}
		systems[attr] = System{Toplevel: top, Closure: closure}
	}
	return systems, nil
}
