package sequence

import (
	"context"
	"fmt"
	"slices"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/kexec"
)

// VM is a local VM to install into instead of a host (Plan.VM). The run
// then skips kexec and asks no confirmation. Boot is called once the
// layout is rendered, before the first connection: it makes the VM's
// disks for the layout, boots the installer tarball of VMBoot.Kexec
// directly and returns how to reach it. Rebooting is called just before
// the installed system is told to reboot. Close ends the run: it stops
// the VM, removes its files and returns the run's error as the VM run
// reports it (nil stays nil unless the cleanup failed).
type VM interface {
	Boot(ctx context.Context, b VMBoot) (target.Options, error)
	Rebooting()
	Close(err error) error
}

// VMBoot is what VM.Boot is given.
type VMBoot struct {
	Layout *disko.Layout
	Needs  disko.Needs
	Kexec  kexec.Options  // the installer tarball: Source ("": the default), SHA256, CacheDir, HTTP
	Target target.Options // the plan's: the user's keys, agent and timeouts
	Sink   event.Sink
	// Ports are the installed system's SSH ports other than 22 (its
	// sshd's, its initrd's): the reboot check dials them at the same
	// port on 127.0.0.1, so the VM forwards each from there.
	Ports []int
}

// inVM is the run into r.p.VM: no kexec, nothing to confirm, and no
// advice on going on (no *Stopped): the VM goes with the run.
func (r *run) inVM(ctx context.Context) error {
	r.p.Phases = slices.DeleteFunc(slices.Clone(r.p.Phases), func(ph string) bool { return ph == phase.Kexec })
	r.p.Confirm = nil
	return r.p.VM.Close(r.run(ctx))
}

// bootVM boots r.p.VM, if any, and makes it the target.
func (r *run) bootVM(ctx context.Context) error {
	if r.p.VM == nil {
		return nil
	}
	b := VMBoot{Layout: r.layout, Needs: r.needs, Kexec: r.p.Kexec, Target: r.p.Target, Sink: r.sink}
	for _, port := range append(slices.Clone(r.boot.Ports), r.boot.InitrdSSHPort) {
		if port != 0 && port != 22 && !slices.Contains(b.Ports, port) {
			b.Ports = append(b.Ports, port)
		}
	}
	t, err := r.p.VM.Boot(ctx, b)
	r.p.Target, r.p.Host = t, fmt.Sprintf("the VM's installer on 127.0.0.1:%d", t.Port)
	return err
}

// rebooting marks the host as told to reboot (and tells the VM).
func (r *run) rebooting() {
	r.state = Rebooted
	if r.p.VM != nil {
		r.p.VM.Rebooting()
	}
}
