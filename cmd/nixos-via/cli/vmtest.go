package cli

import "github.com/nixos-via/nixos-via/localvm"

// vmTest: with --vm-test the install goes into a local VM (package localvm).
func (o *Options) vmTest() error {
	switch {
	case o.VMTest && o.conn.Destination != "":
		return usagef("--vm-test installs into a local VM, not onto %s: drop the host", o.conn.Destination)
	case o.VMTest:
		o.Plan.VM = localvm.New(localvm.Options{Accel: o.VMAccel})
	case o.VMAccel != "":
		return usagef("--vm-accel needs --vm-test")
	}
	return nil
}

// vmAccel is --vm-accel, checked at once.
func (o *Options) vmAccel(v string) error {
	if v != "kvm" && v != "tcg" && v != "auto" {
		return usagef("--vm-accel %q: want kvm, tcg or auto", v)
	}
	o.VMAccel = v
	return nil
}
