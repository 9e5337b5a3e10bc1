package install

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/target"
)

// RebootOptions shape Reboot.
type RebootOptions struct {
	Root     string // unmounted before the reboot; "" is DefaultRoot
	Toplevel string // the installed system, which must come up
	// CopyHostKeys says the installed system has the installer's host
	// keys: it must present the same key. Otherwise its new key replaces
	// the old one in known_hosts.
	CopyHostKeys bool
	// Timeout bounds the wait for the host to go down, and then the wait
	// for the installed system to answer.
	Timeout time.Duration
	Home    string // for ~/.ssh (known_hosts)
}

// Reboot unmounts the root (exporting ZFS pools), reboots the installer
// properly (reboot, so its init syncs and unmounts the disks; reboot -f
// where that fails or the host is still up after forceAfter(opts.Timeout))
// and waits for the installed system, which must answer as root with a new
// boot id and run opts.Toplevel. It returns the connection to the
// installed system. conn is closed once the host went down; the caller
// still owns it (closing it again is harmless).
func Reboot(ctx context.Context, conn *target.Conn, sink event.Sink, opts RebootOptions) (*target.Conn, error) {
	sink = sinkOr(sink)
	root := rootOr(opts.Root)
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
	report(sink, "reboot", event.Step, "unmounting %s", root)
	if err := runScript(ctx, conn, sink, "reboot", "unmount "+root, unmount); err != nil {
		return nil, err
	}
	res := *conn.Resolved()
	installerKey := conn.HostKey()
	report(sink, "reboot", event.Step, "rebooting into the installed system")
	// Detached, so the command returns before the host goes down.
	detach := "(\n" + rebootScript(2*time.Second, forceAfter(opts.Timeout)) + ") </dev/null >/dev/null 2>&1 &"
	if _, err := conn.Output(ctx, detach, nil); err != nil {
		return nil, fmt.Errorf("reboot: %w", err)
	}
	if err := conn.WaitDown(ctx, opts.Timeout, time.Second); err != nil {
		return nil, err
	}
	res.User, res.HostKeyPin, res.SSHOptions = "root", "", nil
	if opts.CopyHostKeys {
		// The installed system has the host's own keys: nothing else is right.
		res.PinnedKey, res.PinSource = installerKey, "the host's key (--copy-host-keys)"
	} else {
		// A new system has new host keys: record them instead of the old.
		res.PinnedKey, res.ReplaceKnownHost = nil, true
	}
	report(sink, "reboot", event.Step, "waiting for the installed system on %s", res.Addr())
	up, err := target.WaitUp(ctx, &res, opts.Home, opts.Timeout, 2*time.Second)
	if err != nil {
		return nil, err
	}
	if err := verifyBooted(ctx, up, before, opts.Toplevel); err != nil {
		up.Close()
		return nil, err
	}
	report(sink, "reboot", event.Info, "the installed system is up: /run/current-system = %s", opts.Toplevel)
	return up, nil
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

// forceAfter is how long Reboot gives a proper reboot before it forces one:
// a third of the wait for the host to go down, at most a minute (a clean
// shutdown of an installer takes seconds), at least 5 s.
func forceAfter(timeout time.Duration) time.Duration {
	return min(max(timeout/3, 5*time.Second), time.Minute)
}

// seconds is d in whole seconds, rounded up.
func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// verifyBooted checks that the host rebooted (its boot id is not before)
// and runs toplevel.
func verifyBooted(ctx context.Context, c *target.Conn, before, toplevel string) error {
	after, err := bootID(ctx, c)
	if err != nil {
		return err
	}
	if after == before {
		return fmt.Errorf("the host answers with the same boot id (%s): it did not reboot", after)
	}
	out, err := c.Output(ctx, "readlink /run/current-system", nil)
	if err != nil {
		return fmt.Errorf("read /run/current-system: %w", err)
	}
	if got := strings.TrimSpace(string(out)); got != toplevel {
		if got == "" {
			got = "-"
		}
		return fmt.Errorf("the host booted %s, not the installed system %s", got, toplevel)
	}
	return nil
}

// bootID is the kernel's random boot id: it changes with every boot.
func bootID(ctx context.Context, c *target.Conn) (string, error) {
	out, err := c.Output(ctx, "cat /proc/sys/kernel/random/boot_id", nil)
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
