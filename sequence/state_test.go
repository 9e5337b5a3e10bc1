package sequence

import (
	"errors"
	"strings"
	"testing"
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
