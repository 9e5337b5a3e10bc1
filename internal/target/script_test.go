package target_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// TestScriptOnLine: as root, the script gets its arguments, a command in it
// that reads stdin does not swallow the rest of it, every line reaches
// OnLine, and a failure says which script, its exit status and its last 40
// lines.
func TestScriptOnLine(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := dial(t, opts(s))
	ctx := ctxT(t, 30*time.Second)

	var lines []string
	script := "echo \"args: $1|$2\"\ncat\necho after-cat\necho to-stderr >&2\n"
	if _, err := c.Script(ctx, target.Script{Name: "ok script", Body: script, Args: []string{"a b", "it's"}, OnLine: func(l string) { lines = append(lines, l) }}); err != nil {
		t.Fatalf("Script: %v", err)
	}
	// stdout and stderr are separate streams: only each one's order holds.
	var stdout []string
	sawStderr := false
	for _, l := range lines {
		if l == "to-stderr" {
			sawStderr = true
			continue
		}
		stdout = append(stdout, l)
	}
	if got, want := strings.Join(stdout, "\n"), "args: a b|it's\nafter-cat"; got != want || !sawStderr || len(lines) != 3 {
		t.Errorf("lines = %q, want %q and to-stderr", lines, want)
	}

	var b strings.Builder
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&b, "echo line-%d\n", i)
	}
	b.WriteString("exit 3\n")
	_, err := c.Script(ctx, target.Script{Name: "failing script", Body: b.String(), OnLine: func(string) {}})
	var ee *target.ExitError
	if !errors.As(err, &ee) || ee.Status != 3 {
		t.Fatalf("Script = %v, want an exit 3 *ExitError", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "failing script: ") || !strings.Contains(msg, "line-11\n") || !strings.HasSuffix(msg, "line-50") || strings.Contains(msg, "line-10\n") {
		t.Errorf("error = %q, want the script's name and exactly its last 40 lines", msg)
	}
}

// TestScriptOnTerminal: the script has a controlling terminal, reads a
// passphrase from /dev/tty that never shows in its output, gets its
// arguments, its temporary file is gone afterwards, and a failure carries
// the last output and the exit status.
func TestScriptOnTerminal(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := dial(t, opts(s))
	ctx := ctxT(t, 30*time.Second)

	script := `{ : </dev/tty; } 2>/dev/null || { echo "no terminal"; exit 7; }
printf 'Passphrase: ' >/dev/tty
IFS= read -r p </dev/tty
echo "read ${#p} bytes for $1; tmp left: $(ls /tmp/nixos-via-script.* 2>/dev/null | wc -l)"
`
	var out strings.Builder
	in := strings.NewReader("correct horse\n")
	_, err := c.Script(ctx, target.Script{Name: "tty script", Body: script, Args: []string{"disk one"}, Terminal: &target.Terminal{In: in, Out: &out}})
	if err != nil {
		t.Fatalf("Script on a terminal: %v\noutput: %q", err, out.String())
	}
	got := strings.ReplaceAll(out.String(), "\r", "")
	if want := "Passphrase: read 13 bytes for disk one"; !strings.Contains(got, want) {
		t.Errorf("output = %q, want it to contain %q", got, want)
	}
	if strings.Contains(got, "horse") {
		t.Errorf("the passphrase was echoed: %q", got)
	}
	if left, err := c.Output(ctx, "ls /tmp/nixos-via-script.* 2>/dev/null | wc -l", nil); err != nil || strings.TrimSpace(string(left)) != "0" {
		t.Errorf("temporary scripts left on the target: %q (%v)", left, err)
	}

	_, err = c.Script(ctx, target.Script{Name: "failing tty script", Body: "echo about to fail\nexit 4\n", Terminal: &target.Terminal{In: strings.NewReader(""), Out: &out}})
	var ee *target.ExitError
	if !errors.As(err, &ee) || ee.Status != 4 || !strings.Contains(err.Error(), "about to fail") {
		t.Errorf("Script on a terminal = %v, want an exit 4 *ExitError with the last output", err)
	}
}

// TestScript: each way Script runs a script (as root or as the login user,
// with input, arguments, its output returned or handed on line by line)
// gets the script its arguments and input and returns its stdout; a
// failure without OnLine carries its stderr and the name.
func TestScript(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := dial(t, opts(s))
	ctx := ctxT(t, 30*time.Second)

	body := "echo \"args: $#:$1|$2\"\necho \"input: $(cat)\"\necho to-stderr >&2\n"
	tests := []struct {
		name  string
		s     target.Script
		input string // "" for none
		want  string
	}{
		{"root", target.Script{Body: body, Args: []string{"a b", "it's"}}, "", "args: 2:a b|it's\ninput: \n"},
		{"root with input", target.Script{Body: body}, "in put", "args: 0:|\ninput: in put\n"},
		{"login", target.Script{Body: "echo \"args: $#:$1|$2\"\n", Args: []string{"-x", "y"}, AsLogin: true}, "", "args: 2:-x|y\n"},
		{"login with input", target.Script{Body: body, Args: []string{"1"}, AsLogin: true}, "x", "args: 1:1|\ninput: x\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			if tc.input != "" {
				s.Input = strings.NewReader(tc.input)
			}
			got, err := c.Script(ctx, s)
			if err != nil || got != tc.want {
				t.Errorf("Script = %q, %v; want %q, nil", got, err, tc.want)
			}

			var lines []string
			s.OnLine = func(l string) { lines = append(lines, l) }
			if tc.input != "" {
				s.Input = strings.NewReader(tc.input)
			}
			out, err := c.Script(ctx, s)
			// Only the script's stdout lines: stderr may hold the
			// test machine's shell noise too.
			var stdout []string
			for _, l := range lines {
				if strings.HasPrefix(l, "args: ") || strings.HasPrefix(l, "input: ") {
					stdout = append(stdout, l)
				}
			}
			if got := strings.Join(stdout, "\n") + "\n"; err != nil || out != "" || got != tc.want {
				t.Errorf("Script with OnLine = %q, %v, lines %q; want \"\", nil, lines %q", out, err, lines, tc.want)
			}
		})
	}

	for _, login := range []bool{false, true} {
		_, err := c.Script(ctx, target.Script{Name: "failing", Body: "echo out\necho the-reason >&2\nexit 5\n", AsLogin: login})
		var ee *target.ExitError
		if !errors.As(err, &ee) || ee.Status != 5 || !strings.HasPrefix(err.Error(), "failing: ") || !strings.Contains(err.Error(), "the-reason") || strings.Contains(err.Error(), "out") {
			t.Errorf("Script (login %v) = %v, want exit 5 named failing with its stderr", login, err)
		}
	}
	var stderr strings.Builder
	_, err := c.Script(ctx, target.Script{Body: "echo the-reason >&2\nexit 5\n", AsLogin: true, Stderr: &stderr})
	if err == nil || strings.Contains(err.Error(), "the-reason") || !strings.Contains(stderr.String(), "the-reason\n") {
		t.Errorf("Script with Stderr = %v, stderr %q; want the reason in Stderr only", err, stderr.String())
	}
}
