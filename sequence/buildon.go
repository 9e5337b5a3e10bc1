package sequence

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// Where the system is built (--build-on), as nixos-anywhere decides it.
const (
	BuildOnAuto   = "auto"   // here when this machine's Nix can build for the configuration's system, else remote
	BuildOnLocal  = "local"  // here
	BuildOnRemote = "remote" // on the installer, with its Nix
)

// decideBuildOn settles --build-on (p.BuildOn becomes BuildOnLocal or
// BuildOnRemote) before anything is built, as
// nixos-anywhere does: auto builds here when this machine's Nix builds
// for the configuration's system (its own, an extra platform, or a
// trivial derivation for it builds), else on the installer. Nothing is
// built for a prebuilt --store-paths system, with --from or without the
// install and reboot phases, so there is nothing to decide (--from with
// --build-on remote is refused).
//
// Where the configuration's system does not evaluate (a configuration
// without pkgs), nixos-anywhere asks the installer's Nix after the kexec;
// nixos-via builds here instead: our own installer has no Nix, and a
// local build that cannot be done says why.
func (r *run) decideBuildOn(ctx context.Context) error {
	p := r.p
	if p.From != "" {
		// The system comes built from the store: nothing is built anywhere.
		if p.BuildOn == BuildOnRemote {
			return phase.Usagef("--from %s with --build-on remote: the system comes from the store, nothing is built; leave out --build-on", p.From)
		}
		p.BuildOn = BuildOnLocal
		return nil
	}
	switch p.BuildOn {
	case BuildOnLocal, BuildOnRemote:
		return nil
	case BuildOnAuto, "":
	default:
		return phase.Usagef("--build-on %q: want auto, local or remote", p.BuildOn)
	}
	p.BuildOn = BuildOnLocal
	if p.StorePaths != nil || !(p.Has(phase.Install) || p.Has(phase.Reboot)) {
		return nil
	}
	attr, ok := strings.CutSuffix(p.FlakeAttr, ".config")
	if !ok {
		return nil
	}
	attr = p.FlakeRef + "#" + attr + ".pkgs.system"
	var system string
	if err := p.Nix.EvalInto(ctx, attr, &system); err != nil || system == "" {
		return nil
	}
	builds, err := p.Nix.BuildsFor(ctx, system)
	if err != nil {
		return fmt.Errorf("find out whether this machine builds for %s: %w", system, err)
	}
	if !builds {
		r.info(phase.Build, "this machine's Nix cannot build for %s (--build-on auto): the system is to be built on the installer", system)
		p.BuildOn = BuildOnRemote
	}
	return nil
}

// remoteBuild says the system is built on the installer: --build-on
// remote, or auto for a system this machine cannot build, with something
// to build (not a prebuilt --store-paths system; the install or reboot
// phase planned).
func (r *run) remoteBuild() bool {
	p := r.p
	return p.BuildOn == BuildOnRemote && p.StorePaths == nil && (p.Has(phase.Install) || p.Has(phase.Reboot))
}

// willKexec says the kexec phase will boot the installer (the host is not
// one already).
func (r *run) willKexec() bool {
	return r.p.Has(phase.Kexec) && (!r.facts.IsInstaller || r.p.Kexec.Force)
}

// checkRemoteBuild runs in the installer (after the kexec, or at the
// pre-flight when there is none), before any disk is touched: a remote
// build needs the installer's Nix. Our own installer has none; building
// with one that has Nix is not implemented yet. Both stop here.
func (r *run) checkRemoteBuild(ctx context.Context) error {
	if !r.remoteBuild() {
		return nil
	}
	out, err := r.conn.Output(ctx, "nix --version 2>/dev/null || true", nil)
	if err != nil {
		return fmt.Errorf("look for nix on the installer: %w", err)
	}
	version := strings.TrimSpace(string(out))
	instead := "build here with --build-on local (for another architecture, with a remote builder or an emulator in this machine's Nix), " +
		"or install a prebuilt system with --store-paths DISKO SYSTEM"
	if !strings.HasPrefix(version, "nix ") {
		return &phase.Refusal{Check: "build-on", Msg: fmt.Sprintf(
			"the system is to be built on the installer (--build-on), and the installer on %s has no Nix (no nix on its PATH); nothing on its disks was touched. "+
				"Instead: %s, or boot an installer that has Nix (nixos-images', with --kexec URL)",
			r.p.Host, instead)}
	}
	return phase.Usagef("%s: building the system with the installer's Nix (%s, --build-on); nothing on the disks of %s was touched. Instead: %s",
		notImplementedMsg, firstLine(version), r.p.Host, instead)
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
