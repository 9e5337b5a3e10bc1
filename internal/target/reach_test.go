package target_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// TestReachHost: the one reconnect tries each port in turn with the pinned
// key set, ends at once when its retry rule says so, and at the deadline
// says what each port showed.
func TestReachHost(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	closed := sshtest.FreePort(t)
	o := opts(s)
	o.Destination = fmt.Sprintf("root@127.0.0.1:%d", closed)
	o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "kh")}
	o.HostKeyPin = "SHA256:not-this-one" // replaced by the pinned set
	res, err := o.Resolve(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()

	t.Run("second port answers with a pinned key", func(t *testing.T) {
		c, err := target.ReachHost(ctxT(t, 30*time.Second), res, home, target.Reach{What: "up", Ports: []int{closed, s.Port},
			Keys: []ssh.PublicKey{s.HostKey}, KeysFrom: "the test", Timeout: 20 * time.Second, Interval: 200 * time.Millisecond})
		if err != nil {
			t.Fatalf("ReachHost: %v", err)
		}
		defer c.Close()
		if got := c.Resolved().Port; got != s.Port {
			t.Errorf("connected on port %d, want %d", got, s.Port)
		}
	})

	t.Run("retry rule stops it", func(t *testing.T) {
		stop := errors.New("stop here")
		attempts := 0
		_, err := target.ReachHost(ctxT(t, 30*time.Second), res, home, target.Reach{What: "up", Timeout: 20 * time.Second,
			Retry: func(int, error) error { attempts++; return stop }})
		if !errors.Is(err, stop) || attempts != 1 {
			t.Errorf("got %v after %d attempts, want the retry rule's error after 1", err, attempts)
		}
	})

	t.Run("deadline names each port", func(t *testing.T) {
		other := sshtest.FreePort(t)
		start := time.Now()
		_, err := target.ReachHost(context.Background(), res, home, target.Reach{What: "up as the installer", Ports: []int{closed, other},
			Timeout: 2 * time.Second, Interval: 300 * time.Millisecond})
		var we *target.WaitError
		if !errors.As(err, &we) {
			t.Fatalf("got %v, want *WaitError", err)
		}
		for _, want := range []string{fmt.Sprintf("port %d: connection refused", closed), fmt.Sprintf("port %d: connection refused", other), "up as the installer"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("WaitError %q lacks %q", err, want)
			}
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("ReachHost took %s with a 2s deadline", d)
		}
	})
}
