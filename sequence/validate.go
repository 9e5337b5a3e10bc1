package sequence

import (
	"slices"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
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

// ValidateInstall is Validate with the rules of the install command line
// on top, as nixos-anywhere checks them: what to install, and p.Host,
// which must be given and well-formed unless the run goes into a local
// VM (vmTest: --vm-test). diskoModeGiven is whether --disko-mode was.
func (p *Plan) ValidateInstall(vmTest, diskoModeGiven bool) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.StorePaths != nil && (diskoModeGiven || vmTest) {
		return phase.Usagef("--store-paths cannot be combined with --disko-mode or --vm-test")
	}
	if vmTest {
		if p.Flake == "" {
			return phase.Usagef("--vm-test needs --flake")
		}
		if p.BuildOn == BuildOnRemote || p.ExtraFiles != "" || len(p.KeyFiles) > 0 || p.HardwareConfig != nil {
			return phase.Usagef("--vm-test cannot be combined with remote builds, --extra-files, --disk-encryption-keys or --generate-hardware-config")
		}
		return nil
	}
	kexecOnly := len(p.Phases) == 1 && p.Phases[0] == phase.Kexec
	if p.Flake == "" && p.StorePaths == nil && !kexecOnly {
		return phase.Usagef("give --flake REF#NAME or --store-paths DISKO SYSTEM")
	}
	if p.Host == "" {
		return phase.Usagef("no host given: nixos-via [flags] [user@]host")
	}
	if _, _, _, err := target.SplitDestination(p.Host); err != nil {
		return phase.Usagef("host: %v", err)
	}
	return nil
}
