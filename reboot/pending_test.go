package reboot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// TestPendingNote: the note is written private (0600 in a 0700
// directory), read back as written, keyed by the address, and gone once
// removed (removing it twice is no error).
func TestPendingNote(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reboots")
	now := time.Now().UTC().Truncate(time.Second)
	p := Pending{Addr: "127.0.0.1:2222", Host: "127.0.0.1", Port: 2222, Toplevel: "/nix/store/a-nixos-system", BootID: "b1",
		InstallerKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyDummyDummyDummyDummyDummyDummyDummyDu"}, Time: now}
	if err := WritePending(dir, p); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(PendingPath(dir, p.Addr))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("note mode = %v, want 0600", st.Mode().Perm())
	}
	if d, _ := os.Stat(dir); d.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, want 0700", d.Mode().Perm())
	}
	got, err := ReadPending(dir, p.Addr)
	if err != nil || got == nil {
		t.Fatalf("ReadPending = %v, %v", got, err)
	}
	if fmt.Sprint(*got) != fmt.Sprint(p) {
		t.Errorf("read back %+v, want %+v", *got, p)
	}
	if other, err := ReadPending(dir, "127.0.0.1:2223"); other != nil || err != nil {
		t.Errorf("another port's note = %v, %v; want none", other, err)
	}
	for range 2 {
		if err := RemovePending(dir, p.Addr); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := ReadPending(dir, p.Addr); got != nil || err != nil {
		t.Errorf("after removal: %v, %v; want none", got, err)
	}
	os.WriteFile(PendingPath(dir, p.Addr), []byte("{not json"), 0o600)
	if _, err := ReadPending(dir, p.Addr); err == nil {
		t.Error("a broken note read without error")
	}
}

// TestPendingMatches: a note is used only for its own address, the
// system built now and within PendingMaxAge.
func TestPendingMatches(t *testing.T) {
	now := time.Now()
	note := Pending{Addr: "h:22", Toplevel: "/nix/store/a-sys", BootID: "b", Time: now.Add(-time.Hour)}
	for _, tc := range []struct {
		name     string
		edit     func(*Pending)
		addr     string
		toplevel string
		want     bool
		why      string
	}{
		{"same host and system, an hour ago", nil, "h:22", "/nix/store/a-sys", true, ""},
		{"another port", nil, "h:2222", "/nix/store/a-sys", false, "not h:2222"},
		{"another system built", nil, "h:22", "/nix/store/b-sys", false, "not the system built now"},
		{"no system built", nil, "h:22", "", false, "not the system built now"},
		{"older than a day", func(p *Pending) { p.Time = now.Add(-PendingMaxAge - time.Minute) }, "h:22", "/nix/store/a-sys", false, "not within"},
		{"from the future", func(p *Pending) { p.Time = now.Add(time.Hour) }, "h:22", "/nix/store/a-sys", false, "not within"},
		{"no boot id", func(p *Pending) { p.BootID = "" }, "h:22", "/nix/store/a-sys", false, "no boot id"},
	} {
		p := note
		if tc.edit != nil {
			tc.edit(&p)
		}
		got, why := p.Matches(tc.addr, tc.toplevel, now)
		if got != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s: Matches = %v, %q; want %v, %q", tc.name, got, why, tc.want, tc.why)
		}
	}
}

// TestConfirmAcceptsOnlyACheckedSystem: against a real sshd that is not
// the installed system, Confirm fails with a *NotConfirmedError and
// records no key, even where Run's wait would accept the host unchecked
// (a refused login).
func TestConfirmAcceptsOnlyACheckedSystem(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	bootNow, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip(err)
	}
	otherKey := filepath.Join(t.TempDir(), "other")
	pem, _ := sshtest.NewKey(t)
	if err := os.WriteFile(otherKey, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	known := BootConfig{Known: true, SSHD: true, Ports: []int{22}, RootLogin: true}
	const top = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-x"
	for _, tc := range []struct {
		name   string
		key    string
		boot   BootConfig
		before string
		want   string
	}{
		{"same boot id", "", known, strings.TrimSpace(string(bootNow)), "did not reboot"},
		{"another system", "", known, "old", "not the installed system"},
		{"login refused", otherKey, known, "old", "no login on"},
		{"no sshd", "", BootConfig{Known: true}, "old", "runs no sshd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			kh := filepath.Join(home, "known_hosts")
			key := tc.key
			if key == "" {
				key = s.ClientKey
			}
			res, err := target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", s.Port), IdentityFiles: []string{key},
				KnownHostsFiles: []string{kh}, SSHConfigFile: "none", ConnectTimeout: 3 * time.Second}.Resolve(home)
			if err != nil {
				t.Fatal(err)
			}
			note := &Pending{Addr: res.Addr(), Toplevel: top, BootID: tc.before, Time: time.Now()}
			c, err := Confirm(testCtx(t), *res, &testutil.Recorder{}, Options{Timeout: 5 * time.Second, Home: home, Boot: tc.boot, LoginUser: "root"}, note)
			if c != nil {
				c.Close()
			}
			var nc *NotConfirmedError
			if c != nil || !errors.As(err, &nc) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Confirm = %v, %v; want a *NotConfirmedError saying %q", c, err, tc.want)
			}
			if data, _ := os.ReadFile(kh); len(data) != 0 {
				t.Errorf("known_hosts written:\n%s", data)
			}
		})
	}
}
