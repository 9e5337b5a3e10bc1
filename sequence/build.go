package sequence

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/reboot"
)

// notImplementedMsg starts the refusal of what this build cannot do yet.
const notImplementedMsg = "not implemented yet"

// buildLocal evaluates and renders the layout (disko phase) and builds
// the system (install or reboot phase) on this machine.
func (r *run) buildLocal(ctx context.Context) error {
	p := r.p
	if err := r.decideBuildOn(ctx); err != nil {
		return err
	}
	if r.conn != nil {
		// Deferred until the hardware configuration was generated: the
		// host is in the installer already.
		if err := r.checkRemoteBuild(ctx); err != nil {
			return err
		}
	}
	if p.Has(phase.Disko) {
		if err := r.loadLayout(ctx); err != nil {
			return err
		}
	}
	if (p.Has(phase.Install) || p.Has(phase.Reboot)) && !r.remoteBuild() {
		if err := r.buildSystem(ctx); err != nil {
			return err
		}
	}
	if p.Has(phase.Install) && p.Substitute {
		r.caches = r.withFromCache(r.substituters(ctx))
	}
	if p.Has(phase.Reboot) && p.StorePaths == nil {
		// How the installed system comes up, for the check after the
		// reboot (a prebuilt system has no configuration to read: the
		// check then expects root on the same port).
		boot, err := reboot.ReadBootConfig(ctx, p.Nix, p.FlakeRef+"#"+p.FlakeAttr)
		if err != nil {
			return err
		}
		r.boot = boot
	}
	return nil
}

// loadLayout evaluates, validates and renders the disko layout locally.
func (r *run) loadLayout(ctx context.Context) error {
	p := r.p
	if p.StorePaths != nil {
		return r.loadPrebuilt(ctx)
	}
	attr := nix.LayoutAttr(p.FlakeRef, p.FlakeAttr)
	r.step(phase.Build, "evaluating the disk layout %s", attr)
	data, err := p.Nix.EvalLayout(ctx, attr)
	if err != nil {
		return fmt.Errorf("evaluate the disk layout: %w", err)
	}
	layout, err := disko.Parse(disko.UnwrapDevices(data))
	if err != nil {
		return fmt.Errorf("disk layout of %s: %w", p.Flake, err)
	}
	mode, err := DiskoMode(p.DiskoMode)
	if err != nil {
		return err
	}
	script, err := layout.Script(mode, disko.RenderOptions{RootMountpoint: "/mnt"})
	if err != nil {
		return fmt.Errorf("render the disk layout: %w", err)
	}
	needs, err := layout.Needs(mode)
	if err != nil {
		return fmt.Errorf("render the disk layout: %w", err)
	}
	if n := len(needs.Passphrases); n > 0 && p.Terminal == nil {
		return &phase.Refusal{Check: phase.Disko, Problems: []string{fmt.Sprintf(
			"the layout's LUKS %s %s for a passphrase, and there is no terminal to type it on; "+
				"give the layout settings.keyFile or passwordFile and the file with --disk-encryption-keys REMOTE LOCAL, or run nixos-via from a terminal",
			plural(n, "device", "devices")+" "+strings.Join(needs.Passphrases, ", "), plural(n, "asks", "ask"))}}
	}
	r.layout, r.script, r.needs = layout, script, needs
	return nil
}

// plural is one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// DiskoMode maps nixos-anywhere's --disko-mode to a script mode.
func DiskoMode(m string) (disko.Mode, error) {
	switch m {
	case "disko", "":
		return disko.ParseMode("destroy,format,mount")
	case "format":
		return disko.ParseMode("format")
	case "mount":
		return disko.ParseMode("mount")
	}
	return 0, phase.Usagef("--disko-mode %q: want disko, format or mount", m)
}

// buildSystem builds (or takes from --store-paths) the toplevel and reads
// its closure, before anything on the target is touched.
func (r *run) buildSystem(ctx context.Context) error {
	p := r.p
	if p.From != "" {
		return r.systemFromStore(ctx)
	}
	if p.StorePaths != nil {
		top, err := filepath.EvalSymlinks(p.StorePaths.System)
		if err != nil {
			return phase.Usagef("--store-paths: system %s: %v", p.StorePaths.System, err)
		}
		r.toplevel = top
	} else {
		attr := p.FlakeRef + "#" + p.FlakeAttr + ".system.build.toplevel"
		r.step(phase.Build, "building %s", attr)
		outs, err := p.Nix.Build(ctx, attr)
		if err != nil {
			return fmt.Errorf("build the system: %w", err)
		}
		if len(outs) != 1 {
			return fmt.Errorf("build the system: got %d outputs, want 1", len(outs))
		}
		r.toplevel = outs[0]
	}
	closure, err := p.Nix.Closure(ctx, r.toplevel)
	if err != nil {
		return fmt.Errorf("closure of %s: %w", r.toplevel, err)
	}
	r.closure = closure
	var size uint64
	for _, info := range closure {
		size += info.NarSize
	}
	r.info(phase.Build, "system %s: %d paths, %s", r.toplevel, len(closure), event.Bytes(int64(size)))
	r.nixStore = install.FindNixStore(r.toplevel, closure)
	if r.nixStore == "" {
		return fmt.Errorf("the system %s has no nix-store (looked in sw/bin and the closure): it cannot register its own store", r.toplevel)
	}
	return nil
}
