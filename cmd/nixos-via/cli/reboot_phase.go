package cli

import (
	"context"

	"github.com/nixos-via/nixos-via/install"
)

// reboot unmounts /mnt, reboots the installer and waits for the installed
// system, which must run the toplevel we installed with a new boot id.
func (f *flow) reboot(ctx context.Context) error {
	conn, err := install.Reboot(ctx, f.conn, f.ui, install.RebootOptions{
		Toplevel:     f.toplevel,
		CopyHostKeys: f.o.CopyHostKeys,
		Timeout:      f.o.TimeoutReboot,
		Home:         home(f.env),
	})
	if err != nil {
		return err
	}
	f.conn.Close()
	f.conn = conn
	return nil
}
