package sequence

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/hwconfig"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/kexec"
	"github.com/nixos-via/nixos-via/reboot"
)

// run is the state of one Run.
type run struct {
	p    *Plan
	sink event.Sink

	layout *disko.Layout
	script string      // rendered disko script
	needs  disko.Needs // what the script needs on the installer

	conn      *target.Conn
	facts     *target.Facts
	loginUser string // whom the run first logged in as
	diskoDone bool   // the installer already applied this layout (a resumed run)

	boot     reboot.BootConfig  // how the installed system comes up
	toplevel string             // the system to install
	closure  []nix.PathInfo     // its closure
	nixStore string             // the system's own nix-store
	prebuilt *diskorun.Prebuilt // --store-paths' disko script, read (loadPrebuilt)
	caches   []string           // the binary caches the target substitutes from
	source   closure.NARSource  // where the closure's NARs come from (--from); nil: the local store
	fromConn *target.Conn       // the connection to an ssh:// --from store

	state     HostState // how far the run got with the host
	left      []string  // directories a failed kexec upload left on the host
	firstPort int       // the port of the first connection
}

// Run does the whole install of p. Everything that can be checked locally
// is checked before the first connection; nothing destructive runs before
// the pre-flight checks on the host have passed. A failure once the host
// was changed is a *Stopped: where the host is and how to go on. With
// p.VM the install goes into that local VM instead (see VM).
func Run(ctx context.Context, p Plan, sink event.Sink) error {
	r := &run{p: &p, sink: sink}
	defer func() {
		if r.fromConn != nil {
			r.fromConn.Close()
		}
	}()
	if p.VM != nil {
		return r.inVM(ctx)
	}
	return r.stopped(r.run(ctx))
}

func (r *run) run(ctx context.Context) error {
	p := *r.p
	// With --generate-hardware-config the configuration depends on the
	// file the host generates, so evaluation and build wait for it
	// (prebuilt --store-paths cannot depend on it).
	deferBuild := p.HardwareConfig != nil && p.StorePaths == nil
	tb, err := r.prepare(ctx, deferBuild)
	if err != nil {
		return err
	}
	if err := r.bootVM(ctx); err != nil {
		return err
	}
	if err := r.connect(ctx); err != nil {
		if r.confirmPending(ctx, err) {
			r.info(phase.Reboot, "the installed system is up: /run/current-system = %s, the system built (an earlier run was stopped while it rebooted), so nothing was done", r.toplevel)
			return nil
		}
		return err
	}
	defer func() { r.conn.Close() }()
	if r.alreadyInstalled() {
		r.info(phase.Reboot, "the installed system is up: /run/current-system = %s, the system built, so nothing was done (an earlier run installed it; to erase the disks and install again anyway: --reinstall)", r.toplevel)
		return nil
	}
	if !r.willKexec() {
		// Already in an installer: a remote build is settled before the
		// wipe is even asked about.
		if err := r.checkRemoteBuild(ctx); err != nil {
			return err
		}
	}
	if !deferBuild {
		if err := r.checkLayoutOnHost(ctx); err != nil {
			return err
		}
	}
	if err := r.toInstaller(ctx, tb); err != nil {
		return err
	}
	if deferBuild {
		// Evaluate and build what may import the file, then check the
		// layout's disks and list what will be erased, still before
		// anything on them is touched.
		if err := r.buildLocal(ctx); err != nil {
			return err
		}
		if err := r.checkLayoutOnHost(ctx); err != nil {
			return err
		}
	}
	if err := r.phases(ctx); err != nil {
		return err
	}
	r.step(phase.Done, "finished phases %s", strings.Join(p.Phases, ","))
	return nil
}

// prepare is the local work before the first connection: a bad layout, a
// missing key file or a bad tarball stops here. It returns a local
// --kexec tarball, fetched.
func (r *run) prepare(ctx context.Context, deferBuild bool) (*kexec.Tarball, error) {
	p := r.p
	if p.HardwareConfig != nil {
		if err := hwconfig.PreparePath(p.HardwareConfig.Path); err != nil {
			return nil, err
		}
	}
	if !deferBuild {
		if err := r.buildLocal(ctx); err != nil {
			return nil, err
		}
	}
	for _, k := range p.KeyFiles {
		if _, err := os.Stat(k.Local); err != nil {
			return nil, phase.Usagef("--disk-encryption-keys %s %s: %v", k.Remote, k.Local, err)
		}
	}
	if p.Has(phase.Kexec) && p.Kexec.Source != "" && !kexec.IsURL(p.Kexec.Source) {
		return kexec.FetchTarball(ctx, p.Kexec.Source, r.sink, p.Kexec)
	}
	return nil, nil
}

// connect makes the first connection and probes the host.
func (r *run) connect(ctx context.Context) error {
	r.step(phase.Probe, "connecting to %s", r.p.Host)
	opts := r.p.Target
	if opts.Warn == nil {
		opts.Warn = r.warn
	}
	conn, facts, err := Connect(ctx, opts, r.p.Home, r.p.ConnectTimeout)
	if err != nil {
		return err
	}
	r.conn, r.facts = conn, facts
	r.loginUser, r.firstPort = conn.Resolved().User, conn.Resolved().Port
	if facts.IsInstaller {
		r.state = Installer
	}
	r.info(phase.Probe, "%s %s, %s, %d MiB RAM, %s, logged in as %s", facts.OSName, facts.Arch, facts.Kernel, facts.MemTotalKiB>>10, facts.Firmware, facts.User)
	return nil
}

// alreadyInstalled says the host already runs the system built, from
// the disks the layout would erase: a re-run after an install that
// finished (or was cut off in the reboot wait) must not wipe it again.
func (r *run) alreadyInstalled() bool {
	return !r.p.Reinstall && r.willKexec() && r.p.Has(phase.Disko) &&
		r.toplevel != "" && r.facts.CurrentSystem == r.toplevel
}

// toInstaller gets the host into the installer (the kexec phase, when
// planned) and runs the hardware-config step there.
func (r *run) toInstaller(ctx context.Context, tb *kexec.Tarball) error {
	p := r.p
	if p.Has(phase.Kexec) && p.Has(phase.Disko) && r.layout != nil && (!r.facts.IsInstaller || p.Kexec.Force) {
		if err := diskorun.KeysSurviveKexec(r.needs, p.KeyFiles); err != nil {
			return err
		}
	}
	if p.Has(phase.Kexec) {
		opts := p.Kexec
		opts.Facts, opts.Tarball, opts.Home = r.facts, tb, p.Home
		opts.Kexecing = func() { r.state = Kexecing }
		opts.Left = func(dirs []string) { r.left = dirs }
		conn, facts, err := kexec.Run(ctx, r.conn, r.sink, opts)
		if err != nil {
			return err
		}
		r.conn, r.facts, r.state = conn, facts, Installer
		if err := r.checkRemoteBuild(ctx); err != nil {
			return err
		}
	} else if !r.facts.IsRoot && r.facts.Escalation == "" {
		return &phase.Refusal{Check: "root", Msg: fmt.Sprintf("the login user %s is not root and has neither sudo nor doas", r.facts.User)}
	}
	if p.HardwareConfig != nil {
		// In the installer now (or the host already was one).
		if err := hwconfig.Run(ctx, r.conn, r.sink, *p.HardwareConfig); err != nil {
			return &phase.Error{Phase: phase.HardwareConfig, Err: err}
		}
	}
	return nil
}

// phases runs disko, install and reboot, as planned.
func (r *run) phases(ctx context.Context) error {
	p := r.p
	var agent string
	if p.Has(phase.Install) || (p.Has(phase.Disko) && r.prebuilt != nil) {
		// Fail before disko when the agent cannot run on the target.
		var err error
		if agent, err = install.AgentBinary(p.Agent, r.facts.Arch); err != nil {
			return phase.Usagef("%v", err)
		}
	}
	if p.Has(phase.Disko) && r.diskoDone {
		r.state = DisksReady
		r.info(phase.Disko, "this installer already applied this exact layout since it booted and /mnt is mounted: "+
			"nothing is erased again and the install resumes (reboot the installer to start from scratch)")
	} else if p.Has(phase.Disko) {
		if r.prebuilt != nil {
			if err := r.prebuiltToInstaller(ctx, agent); err != nil {
				return err
			}
		}
		r.state = Partitioning
		if err := diskorun.Run(ctx, r.conn, r.sink, r.diskoOptions()); err != nil {
			return &phase.Error{Phase: phase.Disko, Err: err}
		}
		r.state = DisksReady
	}
	if p.Has(phase.Install) {
		r.state = max(r.state, Installing)
		if err := install.Run(ctx, r.conn, r.sink, r.installOptions(agent)); err != nil {
			return &phase.Error{Phase: phase.Install, Err: err}
		}
		r.state = Installed
	}
	if p.Has(phase.Reboot) {
		conn, err := reboot.Run(ctx, r.conn, r.sink, reboot.Options{Toplevel: r.toplevel, CopyHostKeys: p.CopyHostKeys,
			Timeout: p.RebootTimeout, Home: p.Home, Boot: r.boot, LoginUser: r.loginUser,
			Rebooting: r.rebooting, Notes: p.notesDir()})
		if err != nil {
			return &phase.Error{Phase: phase.Reboot, Err: err}
		}
		if conn != nil {
			r.conn.Close()
			r.conn = conn
		}
	}
	return nil
}

func (r *run) diskoOptions() diskorun.Options {
	o := diskorun.Options{Layout: r.layout, Script: r.script, Needs: r.needs, Wipes: r.p.wipes(),
		KeyFiles: r.p.KeyFiles, Terminal: r.p.Terminal, Prebuilt: r.prebuilt}
	if r.p.Has(phase.Install) {
		o.ExtraTools = install.Tools()
	}
	return o
}

func (r *run) installOptions(agent string) install.Options {
	o := install.Options{Agent: agent, Toplevel: r.toplevel, Closure: r.closure, NixStore: r.nixStore, Jobs: r.p.CopyJobs,
		Substitute: closure.SubstituteOptions{Caches: r.caches}, Source: r.source,
		ExtraFiles: r.p.ExtraFiles, Chown: r.p.Chown, CopyHostKeys: r.p.CopyHostKeys}
	for _, k := range r.p.KeyFiles {
		o.KeyFiles = append(o.KeyFiles, k.Remote)
	}
	return o
}

// checkLayoutOnHost finds out whether the installer already applied this
// layout (a resumed run) and otherwise checks the layout's disks on the
// host and lists, and asks about, what the disko phase will erase.
func (r *run) checkLayoutOnHost(ctx context.Context) error {
	if r.prebuilt != nil {
		return r.checkPrebuiltOnHost(ctx)
	}
	if r.layout == nil {
		return nil
	}
	if r.facts.IsInstaller && r.p.wipes() {
		r.diskoDone = diskorun.AlreadyApplied(ctx, r.conn, r.script)
	}
	if r.diskoDone {
		return nil
	}
	return diskorun.CheckDisks(ctx, r.conn, r.sink, r.facts, r.layout, r.p.wipes(), r.p.Confirm)
}

func (r *run) step(ph, format string, a ...any) {
	r.sink.Emit(event.Event{Phase: ph, Kind: event.Step, Msg: fmt.Sprintf(format, a...)})
}

func (r *run) info(ph, format string, a ...any) {
	r.sink.Emit(event.Event{Phase: ph, Kind: event.Info, Msg: fmt.Sprintf(format, a...)})
}

func (r *run) warn(msg string) { r.sink.Emit(event.Event{Kind: event.Warn, Msg: msg}) }
