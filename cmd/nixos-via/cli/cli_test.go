package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// runCLI runs the CLI in-process and returns exit code, stdout and stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = t.TempDir()
	}
	code := Run(ctx, Env{Args: args, Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
	return code, stdout.String(), stderr.String()
}

func TestUnimplementedPhasesAreRefusedNotIgnored(t *testing.T) {
	code, _, stderr := runCLI(t, nil, "--flake", ".#x", "--from", "ssh://cache?remote-store=local", "h")
	if code != ExitUsage || !strings.Contains(stderr, "--from") {
		t.Errorf("--from: exit %d, stderr %q; want exit 2 naming --from", code, stderr)
	}
}

func TestUsageErrorExit2(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "--flake", ".#x")
	if code != ExitUsage || !strings.Contains(stderr, "no host") || stdout != "" {
		t.Errorf("exit %d stdout %q stderr %q; want 2 with the reason on stderr", code, stdout, stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, stdout, _ := runCLI(t, nil, args...)
		if code != 0 || !strings.Contains(stdout, "--disk-encryption-keys REMOTE LOCAL") {
			t.Errorf("%v: exit %d, help lacks the flag list", args, code)
		}
	}
	code, stdout, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "nixos-via ") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
}

func TestFactsJSONFromRealSSHD(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	code, stdout, stderr := runCLI(t, nil, "facts", "--json", "root@127.0.0.1", "-p", fmt.Sprint(s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if code != 0 {
		t.Fatalf("facts: exit %d, stderr %s", code, stderr)
	}
	var f target.Facts
	if err := json.Unmarshal([]byte(stdout), &f); err != nil {
		t.Fatalf("facts --json is not JSON: %v\n%s", err, stdout)
	}
	if f.OS != "Linux" || f.Arch == "" || f.MemTotalKiB == 0 || !f.IsRoot {
		t.Errorf("facts = %+v, want Linux root with memory", f)
	}
	// Human output has the table.
	code, stdout, _ = runCLI(t, nil, "facts", "root@127.0.0.1", "-p", fmt.Sprint(s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if code != 0 || !strings.Contains(stdout, "memory") || !strings.Contains(stdout, "firmware") {
		t.Errorf("facts table: exit %d\n%s", code, stdout)
	}
}

func TestFactsWithChangedHostKeyExitsWithBothFingerprints(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	knownFP := ssh.FingerprintSHA256(s.HostKey)
	s.ReplaceHostKey(t) // known_hosts keeps the old key
	code, stdout, stderr := runCLI(t, nil, "facts", "--json", "root@127.0.0.1", "-p", fmt.Sprint(s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if code != ExitHostKey {
		t.Errorf("exit %d, want %d (host key mismatch)", code, ExitHostKey)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	for _, fp := range []string{knownFP, ssh.FingerprintSHA256(s.HostKey)} {
		if !strings.Contains(stderr, fp) {
			t.Errorf("stderr %q does not name %s", stderr, fp)
		}
	}
}

func TestFactsUnreachableExit3(t *testing.T) {
	sshtest.Need(t)
	port := sshtest.FreePort(t)
	key := filepath.Join(t.TempDir(), "k")
	pemKey, _ := sshtest.NewKey(t)
	os.WriteFile(key, pemKey, 0o600)
	code, _, stderr := runCLI(t, nil, "facts", "root@127.0.0.1", "-p", fmt.Sprint(port), "-i", key, "--timeout-connect", "5s")
	if code != ExitUnreachable || !strings.Contains(stderr, "connection refused") {
		t.Errorf("exit %d stderr %q; want %d and 'connection refused'", code, stderr, ExitUnreachable)
	}
}

func TestFactsWithSSHPASS(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{Password: true})
	sshtest.EnsureUser(t, "nvtest-pw", "pw for facts", false, false)
	code, stdout, stderr := runCLI(t, map[string]string{"SSHPASS": "pw for facts"}, "facts", "--json", "--env-password",
		fmt.Sprintf("nvtest-pw@127.0.0.1:%d", s.Port), "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var f target.Facts
	if err := json.Unmarshal([]byte(stdout), &f); err != nil {
		t.Fatal(err)
	}
	if f.User != "nvtest-pw" || f.IsRoot {
		t.Errorf("user %q root %v, want nvtest-pw non-root", f.User, f.IsRoot)
	}
	if strings.Contains(stderr, "pw for facts") {
		t.Errorf("stderr contains the password")
	}
}
