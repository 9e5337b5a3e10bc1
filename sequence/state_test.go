package sequence

import (
	"errors"
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
