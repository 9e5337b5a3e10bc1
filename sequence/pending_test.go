package sequence

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
	"github.com/nixos-via/nixos-via/kexec"
	"github.com/nixos-via/nixos-via/reboot"
)

// TestNotesDir: the notes live next to the kexec tarball cache, so
// $XDG_CACHE_HOME (or HOME/.cache) decides where.
func TestNotesDir(t *testing.T) {
	for _, tc := range []struct{ xdg, home, want string }{
		{"/x", "/home/u", "/x/nixos-via/reboots"},
		{"", "/home/u", "/home/u/.cache/nixos-via/reboots"},
	} {
		p := Plan{Home: tc.home}
		p.Kexec.CacheDir = kexec.UserCacheDir(tc.xdg, tc.home)
		if got := p.notesDir(); got != tc.want {
			t.Errorf("XDG_CACHE_HOME=%q HOME=%q: notesDir = %q, want %q", tc.xdg, tc.home, got, tc.want)
		}
	}
}

// TestConfirmPendingDecides: a first connection's failure is taken for an
// earlier run's reboot only when it is the host key, a note for this very
// address and system is there, and the installed system is then seen;
// otherwise the failure stands (the note stays for a later, matching run).
func TestConfirmPendingDecides(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing answers there: the check cannot see the system
	const top = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-x"
	mm := &target.HostKeyMismatchError{Host: fmt.Sprintf("[127.0.0.1]:%d", port), Got: "SHA256:new", Want: []string{"SHA256:old"}, Source: "known_hosts:1"}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, tc := range []struct {
		name     string
		err      error
		note     *reboot.Pending
		toplevel string
		tried    bool // the come-up check ran (and failed: nothing answers)
	}{
		{"not a host key", errors.New("connection refused"), &reboot.Pending{Addr: addr, Toplevel: top, BootID: "b", Time: time.Now()}, top, false},
		{"no note", mm, nil, top, false},
		{"another system built", mm, &reboot.Pending{Addr: addr, Toplevel: top, BootID: "b", Time: time.Now()}, "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-other", false},
		{"a stale note", mm, &reboot.Pending{Addr: addr, Toplevel: top, BootID: "b", Time: time.Now().Add(-25 * time.Hour)}, top, false},
		{"a matching note, no system to see", mm, &reboot.Pending{Addr: addr, Toplevel: top, BootID: "b", Time: time.Now()}, top, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			p := Plan{Home: home, ConnectTimeout: 2 * time.Second}
			p.Kexec.CacheDir = filepath.Join(home, "cache", "nixos-via", "kexec")
			p.Target = target.Options{Destination: "root@" + addr, SSHConfigFile: "none", KnownHostsFiles: []string{filepath.Join(home, "kh")}}
			if tc.note != nil {
				if err := reboot.WritePending(p.notesDir(), *tc.note); err != nil {
					t.Fatal(err)
				}
			}
			log := &testutil.Recorder{}
			r := &run{p: &p, sink: log, toplevel: tc.toplevel}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if r.confirmPending(ctx, tc.err) {
				t.Fatal("confirmed an installed system that nothing showed")
			}
			infos := strings.Join(log.Messages(event.Info), "\n")
			if got := strings.Contains(infos, "checking that the installed system came up"); got != tc.tried {
				t.Errorf("come-up check ran = %v, want %v (said %q)", got, tc.tried, infos)
			}
			if tc.note != nil {
				if n, _ := reboot.ReadPending(p.notesDir(), addr); n == nil {
					t.Error("the note was removed though nothing was confirmed")
				}
			}
		})
	}
}
