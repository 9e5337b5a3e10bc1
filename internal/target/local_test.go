package target_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/target"
)

// TestLocal: this machine's runner runs what a Conn runs, the same way: a
// script gets its arguments and its stdin (Input), its lines reach OnLine,
// Output returns stdout, a failure is an *ExitError with the status and
// stderr's tail, a terminal script is refused, and a cancelled context
// ends the command with ctx's error.
func TestLocal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var l target.Local
	for _, tc := range []struct {
		name       string
		script     target.Script
		wantOut    string
		wantLines  string
		wantStatus int    // 0: success
		wantErr    string // in the error
	}{
		{"args and input", target.Script{Body: "echo \"$1|$2\"; cat", Args: []string{"a b", "it's"}, Input: strings.NewReader("from stdin\n")},
			"a b|it's\nfrom stdin\n", "", 0, ""},
		{"lines", target.Script{Body: "echo one; echo two >&2; echo three", OnLine: func(string) {}},
			"", "one two three", 0, ""},
		{"failure", target.Script{Name: "failing", Body: "echo bad thing >&2; exit 3"},
			"", "", 3, "failing: "},
		{"terminal", target.Script{Name: "passphrase", Body: "true", Terminal: &target.Terminal{}},
			"", "", 0, "passphrase: a script on a terminal runs only over SSH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			if tc.script.OnLine != nil {
				tc.script.OnLine = func(s string) { lines = append(lines, s) }
			}
			out, err := l.Script(ctx, tc.script)
			var ee *target.ExitError
			switch {
			case tc.wantStatus != 0:
				if !errors.As(err, &ee) || ee.Status != tc.wantStatus || !strings.Contains(ee.Stderr, "bad thing") || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Errorf("Script = %v, want an exit %d *ExitError starting %q with stderr's 'bad thing'", err, tc.wantStatus, tc.wantErr)
				}
			case tc.wantErr != "":
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("Script = %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("Script: %v", err)
			}
			if out != tc.wantOut {
				t.Errorf("stdout %q, want %q", out, tc.wantOut)
			}
			if got := strings.Join(lines, " "); tc.wantLines != "" && len(lines) != 3 || tc.wantLines == "" && len(lines) != 0 {
				t.Errorf("lines %q, want %q", got, tc.wantLines)
			}
		})
	}
	if got, err := l.Output(ctx, "printf %s hello", nil); err != nil || string(got) != "hello" {
		t.Errorf("Output = %q, %v; want hello", got, err)
	}
	short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	defer stop()
	if err := l.Run(short, "sleep 30", nil, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run past its deadline = %v, want context.DeadlineExceeded", err)
	}
}
