package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// agentBin is the nixos-via binary, built once: the agent that receives
// the closure on the "host".
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deploy-agent")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "nixos-via")
	cmd := exec.Command("go", "build", "-o", agentBin, "../cmd/nixos-via")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fakeSwitch is the switch-to-configuration of the test systems. It logs
// "TOPLEVEL ACTION" to ROOT/stc.log and behaves as the system's kind file
// says: ok (becomes the running system, gives back the login key a
// broken system took), fail (exits 3), dropkey (becomes the running
// system and takes the login key away: a system nobody can log in to),
// slow (waits for ROOT/proceed first, then as ok).
const fakeSwitch = `#!/bin/sh
R=${0%%/nix/store/*}
top=${0%/bin/switch-to-configuration}
top=${top#"$R"}
echo "$top $1" >> "$R/stc.log"
kind=$(cat "$R$top/kind")
keys=$(cat "$R/keys")
[ "$1" = dry-activate ] && { echo "would start the services of $top"; exit 0; }
if [ "$kind" = slow ]; then
	while [ ! -e "$R/proceed" ]; do sleep 0.1; done
	kind=ok
fi
case "$kind" in
ok)
	[ -e "$keys.off" ] && mv "$keys.off" "$keys"
	[ "$1" = boot ] || ln -sfn "$top" "$R/run/current-system"
	echo "activated $top"
	;;
fail) echo "activation of $top failed"; exit 3 ;;
dropkey)
	mv "$keys" "$keys.off"
	ln -sfn "$top" "$R/run/current-system"
	;;
esac
`

// system adds a test system of this kind to the local store and returns
// it with its closure.
func system(t *testing.T, name, kind string) (string, []nix.PathInfo) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "nixos-system-"+name)
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin", "switch-to-configuration"), []byte(fakeSwitch), 0o755)
	os.WriteFile(filepath.Join(dir, "kind"), []byte(kind+"\n"), 0o644)
	out, err := exec.Command("nix-store", "--add", dir).Output()
	if err != nil {
		t.Fatalf("nix-store --add: %v", err)
	}
	top := strings.TrimSpace(string(out))
	infos, err := nix.CLI{Args: []string{"--option", "substituters", ""}}.Closure(context.Background(), top)
	if err != nil {
		t.Fatal(err)
	}
	return top, infos
}

// host is a "running system" under a directory of this machine, reached
// over a real sshd (through a proxy a test may cut).
type host struct {
	root  string
	srv   *sshtest.Server
	proxy *sshtest.Proxy
	old   string
}

func newHost(t *testing.T) *host {
	t.Helper()
	sshtest.Need(t)
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Skip("no nix-store")
	}
	srv := sshtest.Start(t, sshtest.Options{})
	h := &host{root: t.TempDir(), srv: srv, proxy: sshtest.StartProxy(t, srv.Addr)}
	old, _ := system(t, "1.0-old", "ok")
	h.old = old
	for _, d := range []string{"nix/store", "run", "nix/var/nix/profiles"} {
		os.MkdirAll(filepath.Join(h.root, d), 0o755)
	}
	if out, err := exec.Command("cp", "-a", old, filepath.Join(h.root, "nix/store")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	os.Symlink(old, filepath.Join(h.root, "run/current-system"))
	os.Symlink(old, filepath.Join(h.root, "nix/var/nix/profiles/system-1-link"))
	os.Symlink("system-1-link", filepath.Join(h.root, "nix/var/nix/profiles/system"))
	os.WriteFile(filepath.Join(h.root, "keys"), []byte(filepath.Join(srv.Dir, "authorized_keys")), 0o644)
	return h
}

func (h *host) dial(t *testing.T) *target.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := target.Dial(ctx, target.Options{
		Destination: fmt.Sprintf("root@127.0.0.1:%d", h.proxy.Port), IdentityFiles: []string{h.srv.ClientKey},
		PinnedKey: h.srv.HostKey, SSHConfigFile: "none", ConnectTimeout: 5 * time.Second,
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (h *host) options(top string, infos []nix.PathInfo) Options {
	return Options{Toplevel: top, Closure: infos, Agent: agentBin, MagicRollback: true,
		ConfirmTimeout: DefaultConfirmTimeout, ActivationTimeout: time.Minute, Root: h.root}
}

func (h *host) link(t *testing.T, rel string) string {
	t.Helper()
	l, _ := os.Readlink(filepath.Join(h.root, rel))
	return l
}

func (h *host) read(t *testing.T, rel string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(h.root, rel))
	return strings.TrimSpace(string(b))
}

// what the host ended as.
type hostEnd struct {
	Running, Profile, Gen2 string
	Switches               string // stc.log
}

func (h *host) end(t *testing.T) hostEnd {
	return hostEnd{Running: h.link(t, "run/current-system"), Profile: h.link(t, "nix/var/nix/profiles/system"),
		Gen2: h.link(t, "nix/var/nix/profiles/system-2-link"), Switches: h.read(t, "stc.log")}
}

// TestDeploy: a deploy is confirmed over a new connection, or rolled back
// by the host itself: when the switch fails, when the new system takes
// our login away (no new connection within the timeout), when a --check
// fails; without magic rollback a failing switch stays.
func TestDeploy(t *testing.T) {
	tests := []struct {
		name     string
		kind     string
		checks   []string
		action   string
		noMagic  bool
		confirm  time.Duration // the confirm timeout, when not the default
		wantErr  string        // "": none; "rolled back: REASON"; "changed"
		wantGen2 bool          // system-2-link is the new system
		wantNew  bool          // the new system runs
		wantProf string
		switches string // what ran: the systems as N(ew) and O(ld)
	}{
		{name: "confirmed", kind: "ok", checks: []string{"true", "test -d /"}, wantGen2: true, wantNew: true, wantProf: "system-2-link", switches: "N switch"},
		{name: "switch fails", kind: "fail", wantErr: "rolled back: switch-to-configuration switch failed (exit 3)", wantProf: "system-1-link", switches: "N switch,O switch"},
		{name: "login broken", kind: "dropkey", confirm: 5 * time.Second, wantErr: "rolled back: no confirmation within 5s", wantProf: "system-1-link", switches: "N switch,O switch"},
		{name: "check fails", kind: "ok", checks: []string{"true", "false"}, wantErr: "rolled back: check failed: false (exit 1)", wantProf: "system-1-link", switches: "N switch,O switch"},
		{name: "test action rolls back", kind: "dropkey", action: "test", confirm: 5 * time.Second, wantErr: "rolled back: no confirmation within 5s", wantProf: "system-1-link", switches: "N test,O test"},
		{name: "no magic rollback", kind: "fail", noMagic: true, wantErr: "changed", wantGen2: true, wantProf: "system-2-link", switches: "N switch"},
		{name: "boot", kind: "ok", action: "boot", wantGen2: true, wantProf: "system-2-link", switches: "N boot"},
		{name: "dry-activate", kind: "ok", action: "dry-activate", wantProf: "system-1-link", switches: "N dry-activate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			h := newHost(t)
			top, infos := system(t, "2.0-"+tc.kind, tc.kind)
			o := h.options(top, infos)
			o.Checks, o.Action, o.MagicRollback = tc.checks, tc.action, !tc.noMagic
			if tc.confirm != 0 {
				o.ConfirmTimeout = tc.confirm
			}
			var rec testutil.Recorder
			err := Run(ctx, h.dial(t), &rec, o)
			var rb *RolledBackError
			var de *Error
			got := ""
			switch {
			case errors.As(err, &rb):
				got = "rolled back: " + rb.Reason
			case errors.As(err, &de) && de.Changed:
				got = "changed"
			case err != nil:
				got = err.Error()
			}
			if got != tc.wantErr {
				t.Errorf("error %q (%v), want %q\n%s", got, err, tc.wantErr, text(&rec))
			}
			want := hostEnd{Running: h.old, Profile: tc.wantProf}
			if tc.wantNew {
				want.Running = top
			}
			if tc.wantGen2 {
				want.Gen2 = top
			}
			want.Switches = strings.NewReplacer("N", top, "O", h.old, ",", "\n").Replace(tc.switches)
			if g := h.end(t); g != want {
				t.Errorf("host ended as\n%+v\nwant\n%+v\n%s", g, want, text(&rec))
			}
			if _, err := os.Stat(filepath.Join(h.root, "var/lib/nixos-via/deploy/lock")); err == nil {
				t.Errorf("the deploy lock is still there")
			}
		})
	}
}

// text is every message rec got, one a line.
func text(rec *testutil.Recorder) string {
	var b strings.Builder
	for _, e := range rec.Events() {
		fmt.Fprintf(&b, "%s %s: %s\n", e.Phase, e.Kind, e.Msg)
	}
	return b.String()
}

// TestDeployLock: a deploy refuses while another one holds the host's
// deploy lock, touching nothing; a lock whose holder is gone is taken over.
func TestDeployLock(t *testing.T) {
	tests := []struct {
		name    string
		pid     string // the lock holder's
		wantErr bool
	}{
		{"held by a live process", strconv.Itoa(os.Getpid()), true},
		{"holder gone", "999999999", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			h := newHost(t)
			lock := filepath.Join(h.root, "var/lib/nixos-via/deploy/lock")
			os.MkdirAll(lock, 0o755)
			os.WriteFile(filepath.Join(lock, "pid"), []byte(tc.pid+"\n"), 0o644)
			os.WriteFile(filepath.Join(lock, "id"), []byte("other\n"), 0o644)
			top, infos := system(t, "2.0-ok", "ok")
			var rec testutil.Recorder
			err := Run(ctx, h.dial(t), &rec, h.options(top, infos))
			var de *Error
			if got := errors.As(err, &de) && !de.Changed && strings.Contains(err.Error(), "another deploy (other)"); got != tc.wantErr {
				t.Fatalf("error %v, want refusal %v\n%s", err, tc.wantErr, text(&rec))
			}
			want := hostEnd{Running: top, Profile: "system-2-link", Gen2: top, Switches: top + " switch"}
			if tc.wantErr {
				want = hostEnd{Running: h.old, Profile: "system-1-link"}
				if _, err := os.Stat(filepath.Join(h.root, top)); err == nil {
					t.Errorf("the refused deploy copied %s", top)
				}
			}
			if g := h.end(t); g != want {
				t.Errorf("host ended as %+v, want %+v", g, want)
			}
		})
	}
}

// TestDeployCutThenRerun: nixos-via dies (its connection cut) while the
// host switches; the host still ends the deploy on its own (no
// confirmation: rolled back), and the next run reports that outcome
// before it deploys.
func TestDeployCutThenRerun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h := newHost(t)
	top, infos := system(t, "2.0-slow", "slow")
	o := h.options(top, infos)
	o.ConfirmTimeout = 3 * time.Second
	runCtx, kill := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, h.dial(t), nil, o) }()
	// The switch has started: nixos-via dies with its connection.
	for h.read(t, "stc.log") == "" {
		select {
		case <-ctx.Done():
			t.Fatal("the switch never started")
		case <-time.After(100 * time.Millisecond):
		}
	}
	kill()
	h.proxy.Cut()
	<-done
	os.WriteFile(filepath.Join(h.root, "proceed"), nil, 0o644)
	state := filepath.Join(h.root, "var/lib/nixos-via/deploy")
	for !final(h.read(t, "var/lib/nixos-via/deploy/"+h.read(t, "var/lib/nixos-via/deploy/last")+"/state")) {
		select {
		case <-ctx.Done():
			t.Fatalf("the host did not end the deploy; state dir %s", state)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if g, want := h.end(t), (hostEnd{Running: h.old, Profile: "system-1-link", Switches: top + " switch\n" + h.old + " switch"}); g != want {
		t.Errorf("after the cut the host ended as %+v, want %+v", g, want)
	}
	// The re-run says what happened, then deploys.
	o.ConfirmTimeout = DefaultConfirmTimeout
	var rec testutil.Recorder
	if err := Run(ctx, h.dial(t), &rec, o); err != nil {
		t.Fatalf("re-run: %v\n%s", err, text(&rec))
	}
	want := "ended while no nixos-via was connected: rolled-back no confirmation within 3s"
	if got := strings.Join(rec.Messages(event.Warn), "\n"); !strings.Contains(got, want) {
		t.Errorf("re-run warnings %q, want %q", got, want)
	}
}
