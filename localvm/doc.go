// Package localvm prepares the throwaway local QEMU VM that `--vm-test`
// rehearses an install in: blank disks named and sized for a disko
// layout, and the choice of accelerator (KVM only when it really works,
// TCG otherwise).
package localvm
