package vmtests

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/vmtests/vm"
)

// vmFacts is the part of `nixos-via facts --json` the harness checks.
type vmFacts struct {
	OSID        string `json:"osId"`
	IsNixOS     bool   `json:"isNixos"`
	IsInstaller bool   `json:"isInstaller"`
	User        string `json:"user"`
	IsRoot      bool   `json:"isRoot"`
	Escalation  string `json:"escalation"`
	Firmware    string `json:"firmware"`
	Disks       []struct {
		Name string `json:"name"`
	} `json:"disks"`
}

// runFacts runs the real CLI's `nixos-via facts --json` against the VM
// through the same known_hosts file as the OpenSSH client.
func runFacts(t *testing.T, ctx context.Context, agent string, s *vm.SSH) *vmFacts {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, agent, "facts", "--json", "-i", s.KeyFile, "-p", strconv.Itoa(s.Port),
		"--ssh-option", "UserKnownHostsFile="+s.KnownHosts, "--ssh-option", "StrictHostKeyChecking=yes",
		s.User+"@127.0.0.1")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nixos-via facts %s@127.0.0.1:%d: %v\n%s", s.User, s.Port, err, stderr.String())
	}
	var f vmFacts
	if err := json.Unmarshal(stdout.Bytes(), &f); err != nil {
		t.Fatalf("nixos-via facts --json: %v\n%s", err, stdout.String())
	}
	return &f
}

func hasDisk(f *vmFacts, name string) bool {
	for _, d := range f.Disks {
		if d.Name == name || d.Name == "/dev/"+name {
			return true
		}
	}
	return false
}
