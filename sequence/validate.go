package sequence

import (
	"slices"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// Validate checks the fields of p that take one of a few words and those
// that exclude each other, before anything runs, and fills in the
// defaults of BuildOn (auto) and DiskoMode (disko). What it refuses is a
// *phase.UsageError naming the flag, as nixos-anywhere's own checks do.
func (p *Plan) Validate() error {
	if p.BuildOn == "" {
		p.BuildOn = BuildOnAuto
	}
	if !slices.Contains([]string{BuildOnAuto, BuildOnLocal, BuildOnRemote}, p.BuildOn) {
		return phase.Usagef("--build-on %q: want auto, local or remote", p.BuildOn)
	}
	if p.DiskoMode == "" {
		p.DiskoMode = "disko"
	}
	if !slices.Contains([]string{"disko", "format", "mount"}, p.DiskoMode) {
		return phase.Usagef("--disko-mode %q: want disko, format or mount", p.DiskoMode)
	}
	if p.From != "" {
		if err := checkFrom(p.From); err != nil {
			return err
		}
	}
	if p.StorePaths != nil && p.Flake != "" {
		return phase.Usagef("--flake and --store-paths exclude each other")
	}
	return nil
}
