package reboot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Options shape the reboot phase.
type Options struct {
	Root     string // unmounted before the reboot; "" is install.DefaultRoot
	Toplevel string // the installed system, which must come up
	// CopyHostKeys says the installed system has the installer's host
	// keys: it must present the same key. Otherwise its new key replaces
	// the old one in known_hosts.
	CopyHostKeys bool
	// Timeout bounds the wait for the host to go down, and then the wait
	// for the installed system to answer.
	Timeout time.Duration
	Home    string // for ~/.ssh (known_hosts)
	// Boot is what the configuration says about how the system comes up
	// (ReadBootConfig); the zero value is an unknown configuration.
	Boot BootConfig
	// LoginUser is whom the run logged in as, tried when the
	// configuration has that user.
	LoginUser string
	// Rebooting, when set, is called just before the reboot command is
	// sent: from then on the host may be running the new system.
	Rebooting func()
	// Notes is the directory for the pending-reboot note (Pending), kept
	// while the host reboots; "" writes none.
	Notes string
}

// Run is the reboot phase: it unmounts the root (exporting ZFS pools), reboots the installer
// properly (reboot, so its init syncs and unmounts the disks; reboot -f
// where that fails or the host is still up after forceAfter(opts.Timeout))
// and waits for the installed system as its configuration (opts.Boot)
// says it comes up: on its sshd's port, logging in as root where root may,
// else as the run's login user or a wheel user the configuration has. It
// returns a connection to the installed system once it saw a new boot id
// and /run/current-system = opts.Toplevel, and records the new host key
// then. It returns nil and no error, with a warning, where the system
// came up as far as can be seen but cannot be checked: it runs no sshd,
// it refuses every login we have (its key is recorded), or it waits for a
// LUKS passphrase at boot (no key of an initrd is ever recorded). It
// returns a *NotConfirmedError when the system provably did not come up:
// nothing answered by the deadline, the boot id did not change, or
// another system booted. conn is closed once the host went down; the
// caller still owns it (closing it again is harmless).
func Run(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) (*target.Conn, error) {
	if sink == nil {
		sink = event.Discard{}
	}
	root := opts.Root
	if root == "" {
		root = install.DefaultRoot
	}
	before, err := bootID(ctx, conn)
	if err != nil {
		return nil, err
	}
	unmount := fmt.Sprintf(`r=%s
sync
if command -v zpool >/dev/null 2>&1 && [ -n "$(zpool list -H 2>/dev/null)" ]; then
  umount -R "$r"; swapoff -a || true; zpool export -a
elif mountpoint -q "$r" 2>/dev/null || grep -q " $r " /proc/mounts; then
  umount -R "$r" || { echo "umount -R $r failed; unmounting lazily" >&2; umount -R -l "$r"; }
  swapoff -a 2>/dev/null || true
fi
sync
`, target.ShellQuote(root))
	report(sink, event.Step, "unmounting %s", root)
	if _, err := conn.Script(ctx, target.Script{Name: "unmount " + root, Body: unmount,
		OnLine: func(line string) { report(sink, event.Info, "%s", line) }}); err != nil {
		return nil, err
	}
	res := *conn.Resolved()
	res.SSHOptions = nil
	installerKeys := conn.HostKeys()
	note := Pending{Addr: res.Addr(), Host: res.HostName, Port: res.Port, Toplevel: opts.Toplevel, BootID: before,
		InstallerKeys: authorizedLines(installerKeys), Time: time.Now().UTC()}
	if opts.Notes != "" {
		if err := WritePending(opts.Notes, note); err != nil {
			report(sink, event.Warn, "%v (a run stopped in the reboot wait cannot be confirmed by the next one)", err)
		}
		defer func() {
			// Kept only when this run was stopped: the next one confirms.
			if ctx.Err() == nil {
				if err := RemovePending(opts.Notes, note.Addr); err != nil {
					report(sink, event.Warn, "%v", err)
				}
			}
		}()
	}
	report(sink, event.Step, "rebooting into the installed system")
	if opts.Rebooting != nil {
		opts.Rebooting()
	}
	// Detached, so the command returns before the host goes down.
	detach := "(\n" + rebootScript(2*time.Second, forceAfter(opts.Timeout)) + ") </dev/null >/dev/null 2>&1 &"
	if _, err := conn.Output(ctx, detach, nil); err != nil {
		return nil, fmt.Errorf("reboot: %w", err)
	}
	if err := conn.WaitDown(ctx, opts.Timeout, time.Second); err != nil {
		return nil, err
	}
	w := newComeUp(res, sink, opts, before)
	if opts.CopyHostKeys {
		// The installed system has the host's own keys: nothing else is right.
		w.keys = installerKeys
	}
	return w.wait(ctx, opts.Timeout)
}

// newComeUp is the wait for opts.Toplevel on the host res reaches, which
// had boot id before.
func newComeUp(res target.Resolved, sink event.Sink, opts Options, before string) *comeUp {
	return &comeUp{res: res, home: opts.Home, boot: opts.Boot, loginUser: opts.LoginUser, before: before,
		top: opts.Toplevel, sink: sink, every: 2 * time.Second}
}

// Confirm is the reboot phase's check for a reboot an earlier run began
// and did not see through (note, which the caller matched): the same
// wait as Run's after the reboot, on res (the host as dialled now), for
// the note's system and against its boot id, recording the new host key
// as Run does. Unlike Run it accepts nothing it could not check: a host
// it cannot log in to is a *NotConfirmedError, and nothing is recorded.
// opts.Timeout bounds the wait; opts.Toplevel is taken from the note.
func Confirm(ctx context.Context, res target.Resolved, sink event.Sink, opts Options, note *Pending) (*target.Conn, error) {
	if sink == nil {
		sink = event.Discard{}
	}
	res.SSHOptions = nil
	opts.Toplevel = note.Toplevel
	w := newComeUp(res, sink, opts, note.BootID)
	w.strict = true
	if opts.CopyHostKeys {
		keys, err := note.installerKeys()
		if err != nil {
			return nil, err
		}
		w.keys = keys
	}
	c, err := w.wait(ctx, opts.Timeout)
	if err == nil && c == nil {
		err = &NotConfirmedError{Msg: "the installed system could not be checked"}
	}
	return c, err
}

// rebootScript waits delay, then asks the host for a proper reboot (its
// init stops the services and unmounts and syncs the disks). Where reboot
// fails it forces one at once (reboot -f, after a sync); where reboot
// returned but the host is still up force later, it forces one then. A
// host going down on time ends the script before that.
func rebootScript(delay, force time.Duration) string {
	return fmt.Sprintf(`sleep %d
sync
if reboot; then sleep %d; fi
sync
reboot -f
`, seconds(delay), seconds(force))
}

// forceAfter is how long Run gives a proper reboot before it forces one:
// a third of the wait for the host to go down, at most a minute (a clean
// shutdown of an installer takes seconds), at least 5 s.
func forceAfter(timeout time.Duration) time.Duration {
	return min(max(timeout/3, 5*time.Second), time.Minute)
}

// seconds is d in whole seconds, rounded up.
func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// report emits an event of the reboot phase.
func report(s event.Sink, kind event.Kind, format string, a ...any) {
	s.Emit(event.Event{Phase: phase.Reboot, Kind: kind, Msg: fmt.Sprintf(format, a...)})
}

// bootID is the kernel's random boot id: it changes with every boot.
func bootID(ctx context.Context, c *target.Conn) (string, error) {
	out, err := c.Output(ctx, "cat /proc/sys/kernel/random/boot_id", nil)
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
