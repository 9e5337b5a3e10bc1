package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/sshtest"
)

func TestProf(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	kh := filepath.Join(t.TempDir(), "kh")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, ssh.MarshalAuthorizedKey(s.HostKey))), 0o600)
	for _, jobs := range []string{"1", "2"} {
		root := t.TempDir()
		cmd := exec.Command("/tmp/via", "send", "--store-root", "/var/tmp/nixos-via-bench/src", "--paths", "/var/tmp/nixos-via-bench/paths",
			"--port", fmt.Sprint(s.Port), "--key", s.ClientKey, "--known-hosts", kh, "--root", root,
			"--agent", os.Getenv("AGENTENV")+" VIA_CPUPROFILE=/tmp/agent"+jobs+".prof /tmp/via", "--jobs", jobs)
		cmd.Env = append(os.Environ(), "VIA_CPUPROFILE=/tmp/send"+jobs+".prof")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("jobs %s: %v %s %v", jobs, time.Since(start), out, err)
	}
}
