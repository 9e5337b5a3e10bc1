package sequence

import (
	"context"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// BuildSystem builds p's system on this machine as the install does
// (p.FlakeRef#p.FlakeAttr's system.build.toplevel, or p.StorePaths.System
// when prebuilt) and reads its closure: what a deploy copies.
func BuildSystem(ctx context.Context, p Plan, sink event.Sink) (string, []nix.PathInfo, error) {
	r := &run{p: &p, sink: sink}
	if err := r.buildSystem(ctx); err != nil {
		return "", nil, err
	}
	return r.toplevel, r.closure, nil
}
