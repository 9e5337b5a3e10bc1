package sequence

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/target"
)

// TestStoppedSaysRerun: a failure that is no refusal says whether the same
// command goes on (every state but Rebooted, including a cut before the
// host was changed).
func TestStoppedSaysRerun(t *testing.T) {
	for _, tc := range []struct {
		state HostState
		rerun bool
	}{{Untouched, true}, {Installer, true}, {DisksReady, true}, {Installed, true}, {Rebooted, false}} {
		r := &run{p: &Plan{}, state: tc.state}
		var s *Stopped
		if !errors.As(r.stopped(errors.New("connection lost")), &s) {
			t.Fatalf("state %v: not a *Stopped", tc.state)
		}
		if s.Rerun != tc.rerun {
			t.Errorf("state %v: Rerun = %v, want %v", tc.state, s.Rerun, tc.rerun)
		}
	}
}

// TestStoppedSaysWhatWasLeft: a cut upload's leftovers turn "nothing
// changed" into Staged, and the hint names them and how to remove them.
func TestStoppedSaysWhatWasLeft(t *testing.T) {
	for _, tc := range []struct {
		state HostState
		left  []string
		want  HostState
		hint  string
	}{
		{Untouched, nil, Untouched, "nothing on the host was changed"},
		{Untouched, []string{"/root/.nixos-via-kexec-upload-ab"}, Staged, "rm -rf /root/.nixos-via-kexec-upload-ab"},
		{Kexecing, nil, Kexecing, "the installer's kexec was started"},
	} {
		r := &run{p: &Plan{}, state: tc.state, left: tc.left}
		var s *Stopped
		if !errors.As(r.stopped(errors.New("connection lost")), &s) {
			t.Fatalf("state %v: not a *Stopped", tc.state)
		}
		if s.State != tc.want || !s.Rerun {
			t.Errorf("state %v, left %v: got %v (rerun %v), want %v (rerun)", tc.state, tc.left, s.State, s.Rerun, tc.want)
		}
		if got := s.Hint([]string{"h"}, "h"); !strings.Contains(got, tc.hint) {
			t.Errorf("state %v: hint %q does not say %q", tc.state, got, tc.hint)
		}
	}
}

// TestStoppedNamesTheHost: the Stopped carries the destination as given,
// so that its hint can say the command that goes on.
func TestStoppedNamesTheHost(t *testing.T) {
	for _, host := range []string{"h", "root@host.example:2222", ""} {
		r := &run{p: &Plan{Host: host}, state: Installer}
		var s *Stopped
		if !errors.As(r.stopped(errors.New("connection lost")), &s) {
			t.Fatalf("host %q: not a *Stopped", host)
		}
		if s.Host != host {
			t.Errorf("Host = %q, want %q", s.Host, host)
		}
	}
}

// TestStoppedOnAHostKey: a first connection refused on the host key does
// not claim the host still runs its original system (it may run an
// installed one, or be another machine); other failures before any change
// still say nothing was changed.
func TestStoppedOnAHostKey(t *testing.T) {
	mm := &target.HostKeyMismatchError{Host: "[127.0.0.1]:2222", Got: "SHA256:new", Want: []string{"SHA256:old"}, Source: "known_hosts:1"}
	for _, tc := range []struct {
		name    string
		err     error
		want    HostState
		says    string
		notSays string
	}{
		{"mismatch", fmt.Errorf("dial: %w", mm), KeyDiffers, "presented another host key than known_hosts has", "still runs its original system"},
		{"unknown, strict", &target.UnknownHostKeyError{Host: "h", Got: "SHA256:x"}, KeyDiffers, "changed nothing on it in this run", "still runs its original system"},
		{"connection lost", errors.New("connection lost"), Untouched, "still runs its original system", "host key"},
	} {
		r := &run{p: &Plan{}, state: Untouched}
		var s *Stopped
		if !errors.As(r.stopped(tc.err), &s) {
			t.Fatalf("%s: not a *Stopped", tc.name)
		}
		got := s.Hint([]string{"h"}, "h")
		if s.State != tc.want || !strings.Contains(got, tc.says) || strings.Contains(got, tc.notSays) {
			t.Errorf("%s: state %v, hint %q; want %v, saying %q and not %q", tc.name, s.State, got, tc.want, tc.says, tc.notSays)
		}
	}
}

// TestStoppedInTheRebootWait: a run stopped after the reboot began gives
// no resume command, but says that the same command checks the host and
// leaves an installed system alone, not that it would erase it.
func TestStoppedInTheRebootWait(t *testing.T) {
	r := &run{p: &Plan{}, state: Rebooted}
	var s *Stopped
	if !errors.As(r.stopped(errors.New("interrupted")), &s) {
		t.Fatal("not a *Stopped")
	}
	got := s.Hint([]string{"h"}, "h")
	for _, want := range []string{"run the same command again", "leaves a host that runs the installed system alone"} {
		if !strings.Contains(got, want) || strings.Contains(got, "erase its disks") {
			t.Errorf("hint %q: want %q and no \"erase its disks\"", got, want)
		}
	}
}
