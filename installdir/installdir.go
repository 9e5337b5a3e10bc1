// Package installdir is install-to-dir: the install phase run on this
// machine into a directory, as `nixos-install --root DIR` does. The
// closure goes into DIR/nix/store through the agent's own receiver, run
// in this process (closure.InProcess: the same narHash checks, commits
// and records as over SSH), then package install's steps run against DIR
// through target.Local: the registration with the system's own
// nix-store in a chroot of DIR, the system profile, the extra files and
// ownership, and the bootloader only when asked. DIR/etc/NIXOS marks it
// as a NixOS root (nixos-enter and package enter want it). A re-run
// sends nothing that DIR's Nix database already has.
package installdir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/sequence"
)

// Options say what to install into which directory.
type Options struct {
	Root string // DIR: an absolute directory, created when missing; not /

	// The system: built from FlakeRef#FlakeAttr.system.build.toplevel
	// with Nix, or System, a toplevel already built (nixos-install's
	// --system). Exactly one of them.
	Nix                 nix.CLI
	FlakeRef, FlakeAttr string
	System              string

	Jobs       int    // parallel streams of the closure copy; 0 is 1
	ExtraFiles string // a local directory copied into Root (--extra-files)
	Chown      []install.Ownership
	Bootloader bool // also install the bootloader (switch-to-configuration boot)

	// euid is the effective user id Run checks for root; nil is os.Geteuid.
	euid func() int
}

// Run installs the system into opts.Root. Bad options, and a user who is
// not root, are refused before anything is built or written.
func Run(ctx context.Context, sink event.Sink, opts Options) error {
	if sink == nil {
		sink = event.Discard{}
	}
	if err := check(opts); err != nil {
		return err
	}
	sys, err := buildSystem(ctx, sink, opts)
	if err != nil {
		return &phase.Error{Phase: phase.Build, Err: err}
	}
	if err := installSystem(ctx, sink, opts, sys); err != nil {
		return &phase.Error{Phase: phase.Install, Err: err}
	}
	sink.Emit(event.Event{Phase: phase.Done, Kind: event.Step, Msg: fmt.Sprintf("installed %s into %s", sys.toplevel, opts.Root)})
	return nil
}

// check refuses what cannot be installed, touching nothing.
func check(o Options) error {
	switch {
	case o.Root == "" || !filepath.IsAbs(o.Root):
		return phase.Usagef("install-to-dir: directory %q: want an absolute path", o.Root)
	case filepath.Clean(o.Root) == "/":
		return phase.Usagef("install-to-dir: directory /: this machine's own root is not a place to install into")
	case (o.FlakeRef == "") == (o.System == ""):
		return phase.Usagef("install-to-dir: want either --flake REF#NAME or --system PATH")
	}
	if st, err := os.Stat(o.Root); err == nil && !st.IsDir() {
		return phase.Usagef("install-to-dir: %s is not a directory", o.Root)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return phase.Usagef("install-to-dir: %v", err)
	}
	if o.ExtraFiles != "" {
		if st, err := os.Stat(o.ExtraFiles); err != nil || !st.IsDir() {
			return phase.Usagef("--extra-files %s: not a directory", o.ExtraFiles)
		}
	}
	euid := os.Geteuid
	if o.euid != nil {
		euid = o.euid
	}
	if euid() != 0 {
		return &phase.Refusal{Check: "root", Msg: "install-to-dir needs root (run it with sudo), because it makes " +
			"DIR/nix/store and DIR/nix/var root's as Nix leaves them (the store root:30000, mode 1775, its paths owned by root), " +
			"loads the registration with the system's nix-store in a chroot of DIR, and applies --chown; nothing was built or written"}
	}
	return nil
}

// system is what Run installs.
type system struct {
	toplevel string
	closure  []nix.PathInfo
	nixStore string // the system's own nix-store
}

// buildSystem builds the toplevel (or takes --system) and reads its
// closure, as the remote install does before it connects.
func buildSystem(ctx context.Context, sink event.Sink, o Options) (system, error) {
	p := sequence.Plan{Nix: o.Nix, FlakeRef: o.FlakeRef, FlakeAttr: o.FlakeAttr}
	if o.System != "" {
		top, err := filepath.EvalSymlinks(o.System)
		if err != nil {
			return system{}, phase.Usagef("--system %s: %v", o.System, err)
		}
		p.StorePaths = &sequence.StorePaths{System: top}
	}
	top, infos, err := sequence.BuildSystem(ctx, p, sink)
	if err != nil {
		return system{}, err
	}
	// BuildSystem refuses a system without one, as the install does.
	return system{toplevel: top, closure: infos, nixStore: install.FindNixStore(top, infos)}, nil
}

// installSystem copies, registers and finishes the system in Root.
func installSystem(ctx context.Context, sink event.Sink, o Options, s system) error {
	root := filepath.Clean(o.Root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if err := recordRegistered(ctx, sink, root, s); err != nil {
		return err
	}
	step(sink, "copying the system closure into %s/nix/store", root)
	start := time.Now()
	stats, err := closure.Send(ctx, closure.InProcess{Root: root}, s.closure,
		closure.SendOptions{Agent: closure.InProcessAgent, Root: root, Jobs: o.Jobs, Sink: sink})
	if err != nil {
		return fmt.Errorf("copy the closure: %w", err)
	}
	sink.Emit(event.Event{Phase: phase.Install, Kind: event.Info, Msg: fmt.Sprintf("%s in %s", install.SendSummary(stats), time.Since(start).Round(100*time.Millisecond)),
		Data: map[string]string{"paths_sent": fmt.Sprint(stats.Sent), "paths_present": fmt.Sprint(stats.Present), "nar_bytes_sent": fmt.Sprint(stats.NarBytes)}})
	local := target.Local{}
	if err := install.Register(ctx, local, sink, install.RegisterOptions{Root: root, NixStore: s.nixStore, Toplevel: s.toplevel, Closure: s.closure}); err != nil {
		return err
	}
	if err := markNixOS(root); err != nil {
		return err
	}
	if o.ExtraFiles != "" {
		if err := install.ExtraFiles(ctx, local, sink, o.ExtraFiles, root); err != nil {
			return err
		}
	}
	for _, c := range o.Chown {
		if err := install.Chown(ctx, local, sink, root, c.Path, c.Owner); err != nil {
			return err
		}
	}
	if o.Bootloader {
		return install.InstallBootloader(ctx, local, sink, root)
	}
	return nil
}

// markNixOS makes DIR/etc (0755) and the empty DIR/etc/NIXOS, as
// nixos-install does after setting the profile (the bootloader step makes
// them too, and etc/mtab, which only a bootloader needs).
func markNixOS(root string) error {
	etc := filepath.Join(root, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(etc, "NIXOS"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// recordRegistered tells the copy which of the closure's paths DIR's Nix
// database already has: registration removed the receiver's records, and
// the database is now the record of what is valid. It asks the system's
// own nix-store in a chroot of DIR (`--dump-db`), when DIR has a
// database and that nix-store; without them, or when the dump fails (a
// warning), every path is sent.
func recordRegistered(ctx context.Context, sink event.Sink, root string, s system) error {
	if _, err := os.Stat(filepath.Join(root, "nix/var/nix/db/db.sqlite")); err != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(root, s.nixStore)); err != nil {
		sink.Emit(event.Event{Phase: phase.Install, Kind: event.Info, Msg: fmt.Sprintf(
			"%s has a Nix database but not this system's nix-store yet: every path of the closure is sent again", root)})
		return nil
	}
	out, err := target.Local{}.Output(ctx, "chroot "+target.ShellQuote(root)+" "+target.ShellQuote(s.nixStore)+" --dump-db", nil)
	var registered []nix.PathInfo
	if err == nil {
		registered, err = nix.ParseRegistration(strings.NewReader(string(out)))
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Sending a path again is safe (the receiver replaces it): a
		// database this nix-store cannot read costs time, not the install.
		sink.Emit(event.Event{Phase: phase.Install, Kind: event.Warn, Msg: fmt.Sprintf(
			"could not read the registration of %s (%v): every path of the closure is sent again", root, err)})
		return nil
	}
	want := map[string]bool{}
	for _, info := range s.closure {
		want[info.Path] = true
	}
	var ours []nix.PathInfo
	for _, info := range registered {
		if want[info.Path] {
			ours = append(ours, info)
		}
	}
	return closure.RecordRegistered(root, ours)
}

func step(sink event.Sink, format string, a ...any) {
	sink.Emit(event.Event{Phase: phase.Install, Kind: event.Step, Msg: fmt.Sprintf(format, a...)})
}
