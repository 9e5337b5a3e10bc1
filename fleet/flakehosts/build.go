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

// Build builds the systems of hosts (their System attributes of the
// flake p.Flake, REF or REF#NAME) with one nix build, so Nix builds them once each and in
// parallel, then reads each closure as sequence.BuildSystem does. The
// result is keyed by Host.System.
func Build(ctx context.Context, p sequence.Plan, hosts []fleet.Host, sink event.Sink) (map[string]System, error) {
	ref, _ := split(p.Flake)
	var attrs, installables []string
	seen := map[string]bool{}
	for _, h := range hosts {
		if h.System != "" && !seen[h.System] {
			seen[h.System] = true
			attrs = append(attrs, h.System)
			installables = append(installables, ref+"#"+h.System)
		}
	}
	if len(attrs) == 0 {
		return nil, nil
	}
	sink.Emit(event.Event{Phase: phase.Build, Kind: event.Step, Msg: fmt.Sprintf("building %d systems of %s", len(attrs), ref)})
	outs, err := p.Nix.Build(ctx, installables...)
	if err != nil {
		return nil, fmt.Errorf("build the systems: %w", err)
	}
	if len(outs) != len(attrs) {
		return nil, fmt.Errorf("build the systems: got %d outputs for %d systems", len(outs), len(attrs))
	}
	systems := make(map[string]System, len(attrs))
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
