package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
)

// fakeToolServer starts an sshd whose sessions find the given scripts
// (name -> shell script body) first on their PATH, as an installer
// would have nixos-facter or nixos-generate-config.
func fakeToolServer(t *testing.T, tools map[string]string) *sshtest.Server {
	t.Helper()
	sshtest.Need(t)
	bin := t.TempDir()
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range tools {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return sshtest.Start(t, sshtest.Options{ExtraConfig: "SetEnv PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin\n"})
}

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
