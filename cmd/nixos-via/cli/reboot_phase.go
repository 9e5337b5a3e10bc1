package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/internal/target"
)

// bootID is the kernel's random boot id: it changes with every boot.
func bootID(ctx context.Context, c *target.Conn) (string, error) {
	out, err := c.Output(ctx, "cat /proc/sys/kernel/random/boot_id", nil)
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// reboot unmounts /mnt, reboots the installer and waits for the installed
// system, which must run the toplevel we installed with a new boot id.
func (f *flow) reboot(ctx context.Context) error {
	before, err := bootID(ctx, f.conn)
	if err != nil {
		return err
	}
	const unmount = `sync
if command -v zpool >/dev/null 2>&1 && [ -n "$(zpool list -H 2>/dev/null)" ]; then
  umount -R /mnt; swapoff -a || true; zpool export -a
elif mountpoint -q /mnt 2>/dev/null || grep -q ' /mnt ' /proc/mounts; then
  umount -R /mnt || { echo "umount -R /mnt failed; unmounting lazily" >&2; umount -R -l /mnt; }
  swapoff -a 2>/dev/null || true
fi
sync
`
	f.step("reboot", "unmounting /mnt")
	if err := f.runScript(ctx, "reboot", "unmount /mnt", unmount); err != nil {
		return err
	}
	res := *f.conn.Resolved()
	installerKey := f.conn.HostKey()
	f.step("reboot", "rebooting into the installed system")
	// Detached, so the command returns before the host goes down.
	const detach = `(sleep 2; sync; reboot -f || reboot) </dev/null >/dev/null 2>&1 &`
	if _, err := f.conn.Output(ctx, detach, nil); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	if err := f.conn.WaitDown(ctx, f.o.TimeoutReboot, time.Second); err != nil {
		return err
	}
	res.User, res.HostKeyPin, res.SSHOptions = "root", "", nil
	if f.o.CopyHostKeys {
		// The installed system has the host's own keys: nothing else is right.
		res.PinnedKey, res.PinSource = installerKey, "the host's key (--copy-host-keys)"
	} else {
		// A new system has new host keys: record them instead of the old.
		res.PinnedKey, res.ReplaceKnownHost = nil, true
	}
	f.step("reboot", "waiting for the installed system on %s", res.Addr())
	conn, err := target.WaitUp(ctx, &res, home(f.env), f.o.TimeoutReboot, 2*time.Second)
	if err != nil {
		return err
	}
	f.conn.Close()
	f.conn = conn
	after, err := bootID(ctx, conn)
	if err != nil {
		return err
	}
	if after == before {
		return fmt.Errorf("the host answers with the same boot id (%s): it did not reboot", after)
	}
	out, err := conn.Output(ctx, "readlink /run/current-system", nil)
	if err != nil {
		return fmt.Errorf("read /run/current-system: %w", err)
	}
	if got := strings.TrimSpace(string(out)); got != f.toplevel {
		return fmt.Errorf("the host booted %s, not the installed system %s", orNA(got), f.toplevel)
	}
	f.info("reboot", "the installed system is up: /run/current-system = %s", f.toplevel)
	return nil
}
