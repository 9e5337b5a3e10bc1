package sequence

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// substituters decides which binary caches the target fetches the closure
// from itself (nixos-anywhere's --substitute-on-destination, on unless
// --no-substitute-on-destination): the local Nix's substituters as every
// nix call of this run sees them (so --option substituters replaces them
// and --option extra-substituters adds to them), then, unless
// --no-use-machine-substituters, the configuration's own
// nix.settings.substituters, which nixos-anywhere adds to the installer's
// nix.conf (a configuration without them, or that fails to evaluate them,
// adds none, as there). Only http(s) caches qualify; the others are named
// and skipped. Nothing here contacts a cache.
func (r *run) substituters(ctx context.Context) []string {
	p := r.p
	local, err := p.Nix.Substituters(ctx)
	if err != nil {
		r.warn(fmt.Sprintf("substitution on the destination is off: read the local substituters: %v", err))
		return nil
	}
	all := local
	if p.MachineSubstituters && p.StorePaths == nil && p.FlakeRef != "" {
		var machine []string
		if err := p.Nix.EvalInto(ctx, p.FlakeRef+"#"+p.FlakeAttr+".nix.settings.substituters", &machine); err == nil {
			all = append(all, machine...)
		}
	}
	usable, others := closure.HTTPCaches(dedupe(all))
	if len(others) > 0 {
		r.info(phase.Build, "substitution on the destination skips %s (the target fetches from http(s) binary caches only)", strings.Join(others, ", "))
	}
	return usable
}

// dedupe keeps the first of URLs that differ only in a trailing slash.
func dedupe(urls []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, u := range urls {
		k := strings.TrimRight(u, "/")
		if !seen[k] {
			seen[k] = true
			out = append(out, u)
		}
	}
	return out
}
