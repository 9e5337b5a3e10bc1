package cli

import (
	"context"

	"github.com/nixos-via/nixos-via/reboot"
)

// readBootConfig reads, with the build, how the installed system comes up,
// for the check after the reboot (a prebuilt --store-paths system has no
// configuration to read: the check then expects root on the same port).
func (f *flow) readBootConfig(ctx context.Context) error {
	if f.o.StorePaths != nil {
		return nil
	}
	boot, err := reboot.ReadBootConfig(ctx, f.nix, f.o.FlakeRef+"#"+f.o.FlakeAttr)
	if err != nil {
		return err
	}
	f.boot = boot
	return nil
}

// reboot unmounts /mnt, reboots the installer and waits for the installed
// system as its configuration says it comes up (reboot.Run).
func (f *flow) reboot(ctx context.Context) error {
	conn, err := reboot.Run(ctx, f.conn, f.ui, reboot.Options{
		Toplevel:     f.toplevel,
		CopyHostKeys: f.o.CopyHostKeys,
		Timeout:      f.o.TimeoutReboot,
		Home:         home(f.env),
		Boot:         f.boot,
		LoginUser:    f.loginUser,
	})
	if err != nil {
		return err
	}
	if conn != nil {
		f.conn.Close()
		f.conn = conn
	}
	return nil
}
