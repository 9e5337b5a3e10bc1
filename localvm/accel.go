package localvm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ProbeTimeout bounds the KVM probe: nested KVM can hang rather than fail.
const ProbeTimeout = 10 * time.Second

// ChooseAccel resolves --vm-accel: "kvm" and "tcg" as asked, "auto" KVM
// only when probe succeeds within ProbeTimeout, TCG otherwise.
func ChooseAccel(ctx context.Context, want string, probe func(context.Context) error) (string, error) {
	switch want {
	case "tcg", "kvm":
		return want, nil
	case "auto", "":
		ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
		defer cancel()
		if probe(ctx) != nil {
			return "tcg", nil
		}
		return "kvm", nil
	}
	return "", fmt.Errorf("--vm-accel %q: want kvm, tcg or auto", want)
}

// ProbeKVM checks that /dev/kvm opens read-write and that QEMU starts
// with KVM and quits when asked, before ctx's deadline.
func ProbeKVM(ctx context.Context) error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open /dev/kvm: %w", err)
	}
	f.Close()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "none", "-accel", "kvm",
		"-nodefaults", "-display", "none", "-qmp", "stdio")
	cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-system-x86_64 -accel kvm: %w: %s", err, out)
	}
	return nil
}
