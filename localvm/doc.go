// Package localvm is the throwaway local QEMU VM that `--vm-test`
// rehearses an install in (New: the sequence.VM of the plan): blank disks
// named and sized for a disko layout, the installer tarball's kernel,
// initrd and command line booted directly with a throwaway access key and
// host key carried in as kexec/run carries a host's (InstallerFrom), the
// reboot from the VM's own disk (OVMF when the layout has an ESP), the
// choice of accelerator (KVM only when it really works, TCG otherwise),
// and the cleanup of every file and process on every path.
package localvm
