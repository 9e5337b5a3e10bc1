package sequence

import (
	"context"
	"path/filepath"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// loadPrebuilt reads --store-paths' disko script locally: a store path
// that is an executable file (disko's system.build.diskoScript), and its
// closure; a bad one stops here, before any connection.
func (r *run) loadPrebuilt(ctx context.Context) error {
	given := r.p.StorePaths.Disko
	path, err := filepath.EvalSymlinks(given)
	if err != nil {
		return phase.Usagef("--store-paths: disko script %s: %v", given, err)
	}
	pre, err := diskorun.ReadPrebuilt(ctx, r.p.Nix, path)
	if err != nil {
		return phase.Usagef("--store-paths: disko script: %v", err)
	}
	r.prebuilt = pre
	r.info(phase.Build, "disko script %s: %d paths to copy into the installer's /nix/store", path, len(pre.Closure))
	return nil
}

// prebuiltToInstaller uploads the agent that streams the prebuilt
// script's closure into the installer (the install phase then finds it
// there).
func (r *run) prebuiltToInstaller(ctx context.Context, agent string) error {
	if err := install.UploadAgent(ctx, r.conn, r.sink, agent, install.AgentPath); err != nil {
		return &phase.Error{Phase: phase.Disko, Err: err}
	}
	r.prebuilt.Agent, r.prebuilt.Jobs = install.AgentPath, r.p.CopyJobs
	return nil
}

// checkPrebuiltOnHost is checkLayoutOnHost for a prebuilt script: a
// resumed run is recognised by the script's store path; otherwise the
// wipe is announced and asked about (ConfirmPrebuilt).
func (r *run) checkPrebuiltOnHost(ctx context.Context) error {
	if !r.p.wipes() {
		return nil
	}
	if r.facts.IsInstaller {
		r.diskoDone = diskorun.AlreadyApplied(ctx, r.conn, r.prebuilt.Script)
	}
	if r.diskoDone {
		return nil
	}
	return diskorun.ConfirmPrebuilt(r.sink, r.prebuilt, r.p.Confirm)
}
