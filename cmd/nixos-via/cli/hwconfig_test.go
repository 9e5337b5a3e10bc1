package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
)

func TestHardwareConfigPathCheckedBeforeConnecting(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o644)
	// Nothing listens on port 1: a connection attempt would fail with exit 3.
	code, _, stderr := runCLI(t, nil, "--flake", ".#x", "--generate-hardware-config", "nixos-facter", filepath.Join(file, "facter.json"), "root@127.0.0.1:1")
	if code != ExitUsage || !strings.Contains(stderr, "--generate-hardware-config") || strings.Contains(stderr, "connecting") {
		t.Errorf("got exit %d, stderr:\n%s\nwant exit %d naming the flag, before any connection", code, stderr, ExitUsage)
	}
}

func TestHardwareConfigErrorExitCode(t *testing.T) {
	err := &PhaseError{Phase: phase.HardwareConfig, Err: fmt.Errorf("nixos-facter on h: exit 1")}
	if got := ExitCode(err); got != ExitKexec {
		t.Errorf("got exit %d, want %d", got, ExitKexec)
	}
}
