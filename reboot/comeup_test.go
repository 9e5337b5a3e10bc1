package reboot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// warnings are the warning messages r received, one a line.
func warnings(r *testutil.Recorder) string { return strings.Join(r.Messages(event.Warn), "\n") }

// closedPort is a local port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// TestComeUp drives the wait for the installed system against a real
// sshd standing for it: its "boot id" and "/run/current-system" are files
// the test writes, and whom it lets in is what its authorized keys say.
func TestComeUp(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	state := t.TempDir()
	const top = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-x"
	setState := func(boot, current string) {
		os.WriteFile(filepath.Join(state, "boot_id"), []byte(boot+"\n"), 0o644)
		os.Remove(filepath.Join(state, "current-system"))
		if current != "" {
			os.Symlink(current, filepath.Join(state, "current-system"))
		}
	}
	identify := fmt.Sprintf("cat %s/boot_id; readlink %s/current-system || echo -", state, state)
	otherKey := filepath.Join(t.TempDir(), "other")
	pem, _ := sshtest.NewKey(t)
	if err := os.WriteFile(otherKey, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	wheel := sshtest.EnsureUser(t, "nvtest-wheel", "a wheel user's password", false, false).Username
	known := BootConfig{Known: true, SSHD: true, Ports: []int{22}, RootLogin: true}
	tests := []struct {
		name       string
		boot       BootConfig
		key        string // client key; "" is the server's
		bootID     string
		current    string
		closed     bool // nothing listens
		wantConn   bool
		wantErr    string // in a *NotConfirmedError
		wantWarn   string
		wantRecord bool // the server's key is in known_hosts afterwards
		firstFails bool // the first look at the boot id fails (a system still booting)
	}{
		{name: "up as installed", boot: known, bootID: "new", current: top, wantConn: true, wantRecord: true},
		{name: "a first look that fails is tried again", boot: known, bootID: "new", current: top, firstFails: true, wantConn: true, wantRecord: true},
		{name: "unknown configuration logs in as root", boot: BootConfig{}, bootID: "new", current: top, wantConn: true, wantRecord: true},
		{name: "another system booted", boot: known, bootID: "new", current: "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-other", wantErr: "not the installed system"},
		{name: "same boot id", boot: known, bootID: "old", current: top, wantErr: "did not reboot"},
		{name: "login refused", boot: known, key: otherKey, bootID: "new", current: top,
			wantWarn: "refuses our login as root", wantRecord: true},
		{name: "root may not log in and no user", boot: BootConfig{Known: true, SSHD: true, Ports: []int{22}}, bootID: "new", current: top,
			wantWarn: "no user to log in as (root may not log in", wantRecord: true},
		{name: "a wheel user instead of root", boot: BootConfig{Known: true, SSHD: true, Ports: []int{22}, Users: []string{wheel}, Wheel: []string{wheel}},
			bootID: "new", current: top, wantConn: true, wantRecord: true},
		{name: "no sshd", boot: BootConfig{Known: true}, closed: true, wantWarn: "runs no sshd"},
		{name: "nothing answers", boot: known, closed: true, wantErr: "did not come up"},
		{name: "nothing answers while a passphrase is awaited", boot: BootConfig{Known: true, SSHD: true, Ports: []int{22}, RootLogin: true, Passphrase: []string{"crypted"}},
			closed: true, wantWarn: "waits for the passphrase of LUKS crypted"},
		{name: "the initrd answers on the same port", boot: BootConfig{Known: true, SSHD: true, Ports: []int{22}, RootLogin: true, Passphrase: []string{"crypted"}, InitrdSSHPort: 22},
			bootID: "new", current: "", wantWarn: "waits for the passphrase of LUKS crypted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setState(tc.bootID, tc.current)
			home := t.TempDir()
			kh := filepath.Join(home, "known_hosts")
			key := tc.key
			if key == "" {
				key = s.ClientKey
			}
			port := s.Port
			if tc.closed {
				port = closedPort(t)
			}
			res, err := target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", port), IdentityFiles: []string{key},
				KnownHostsFiles: []string{kh}, SSHConfigFile: "none", ConnectTimeout: 3 * time.Second}.Resolve(home)
			if err != nil {
				t.Fatal(err)
			}
			log := &testutil.Recorder{}
			cmd := identify
			if tc.firstFails {
				tried := filepath.Join(t.TempDir(), "tried")
				cmd = fmt.Sprintf("[ -e %s ] || { touch %s; echo 'starting up' >&2; exit 255; }; %s", tried, tried, identify)
			}
			w := &comeUp{res: *res, home: home, boot: tc.boot, loginUser: "root", before: "old", top: top,
				sink: log, every: 200 * time.Millisecond, identifyCmd: cmd}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// Where something answers, the wait must see at least one
			// whole attempt (a handshake and a command) even on a loaded
			// machine; where nothing does, a short one is enough.
			timeout := 10 * time.Second
			if tc.closed {
				timeout = 3 * time.Second
			}
			c, err := w.wait(ctx, timeout)
			if c != nil {
				defer c.Close()
			}
			var nc *NotConfirmedError
			switch {
			case tc.wantErr != "":
				if !errors.As(err, &nc) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("wait = %v, want a *NotConfirmedError saying %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("wait = %v, want no error", err)
			}
			if got := c != nil; got != tc.wantConn {
				t.Errorf("connection returned = %v, want %v", got, tc.wantConn)
			}
			if got := warnings(log); tc.wantWarn == "" && got != "" || !strings.Contains(got, tc.wantWarn) {
				t.Errorf("warnings = %q, want %q", got, tc.wantWarn)
			}
			data, _ := os.ReadFile(kh)
			recorded := strings.Contains(string(data), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))) ||
				strings.Contains(string(data), "ecdsa") || strings.Contains(string(data), "ssh-ed25519")
			if recorded != tc.wantRecord {
				t.Errorf("known_hosts records a key = %v, want %v:\n%s", recorded, tc.wantRecord, data)
			}
		})
	}
}
