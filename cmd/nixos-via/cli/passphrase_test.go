package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// openPTY opens a pseudo-terminal pair: the master the test types into,
// the slave nixos-via takes for its terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// TestDiskoPassphraseOnTheTerminal: a LUKS device that asks for its
// passphrase gets this process's terminal: the disko script's prompt
// shows, the passphrase typed (twice) goes to it and is never shown or
// logged. (This machine has no device-mapper, so the script fails after
// that, at opening the container: exit 7, past the prompts.)
func TestDiskoPassphraseOnTheTerminal(t *testing.T) {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("no cryptsetup (apt-get install cryptsetup-bin)")
	}
	s := sshtest.Start(t, sshtest.Options{})
	loop, _ := loopDisk(t, 300<<20)
	layout := fmt.Sprintf(`{"disk": {"main": {"type": "disk", "device": %q, "content": {"type": "gpt", "partitions": {
  "luks": {"size": "100%%", "content": {"type": "luks", "name": "nvtest-crypted", "askPassword": true,
    "extraFormatArgs": ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"],
    "content": {"type": "filesystem", "format": "ext4", "mountpoint": "/"}}}}}}}}`, loop)
	ref := layoutFlake(t, layout)
	master, slave := openPTY(t)
	var stderr testutil.SyncBuffer
	const pass = "correct horse battery"
	typed := make(chan error, 1)
	go func() {
		// Answer each prompt as it shows: the new container asks twice.
		for i := 0; i < 2; i++ {
			deadline := time.Now().Add(90 * time.Second)
			for strings.Count(stderr.String(), "Passphrase for nvtest-crypted") <= i {
				if time.Now().After(deadline) {
					typed <- fmt.Errorf("prompt %d did not show", i+1)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			if _, err := master.WriteString(pass + "\r"); err != nil {
				typed <- err
				return
			}
		}
		typed <- nil
	}()
	go func() { // keep the master's output side drained
		b := make([]byte, 4096)
		for {
			if _, err := master.Read(b); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := map[string]string{"HOME": t.TempDir()}
	code := Run(ctx, Env{Args: []string{"--flake", ref + "#t", "--phases", "disko", "--yes", fmt.Sprintf("root@127.0.0.1:%d", s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile=" + s.KnownHosts},
		Stdin: slave, Stdout: &stderr, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
	out := stderr.String()
	if err := <-typed; err != nil {
		t.Fatalf("typing the passphrase: %v\n%s", err, out)
	}
	if strings.Contains(out, pass) {
		t.Errorf("the passphrase shows in the output:\n%s", out)
	}
	if strings.Contains(out, "no terminal") {
		t.Errorf("the script found no terminal:\n%s", out)
	}
	if code != 0 && code != ExitDisko {
		t.Errorf("exit %d, want 0 or %d (disko failed past the prompts):\n%s", code, ExitDisko, out)
	}
	// What was typed is the container's passphrase.
	test := exec.Command("cryptsetup", "open", "--test-passphrase", loop+"p1", "--key-file", "-")
	test.Stdin = strings.NewReader(pass)
	if b, err := test.CombinedOutput(); err != nil {
		t.Errorf("cryptsetup open --test-passphrase with the typed passphrase: %v: %s\n%s", err, b, out)
	}
}
