package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
)

// inProcessAgent is a closure.Runner that runs `... agent VERB ARGS` through
// runAgent in this process, as the binary on the target would.
type inProcessAgent struct{ t *testing.T }

func (a inProcessAgent) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	fields := strings.Fields(cmd)
	if len(fields) < 2 || fields[1] != "agent" {
		return fmt.Errorf("unexpected command %q", cmd)
	}
	env := Env{Args: fields[1:], Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if code := finish(env, runAgent(ctx, env, fields[2:])); code != 0 {
		return fmt.Errorf("%s: exit %d", cmd, code)
	}
	return nil
}

func TestAgentReceivesClosure(t *testing.T) {
	_, infos := nixtest.Closure(t, "cli-agent")
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := closure.SendOptions{Agent: "nixos-via", Root: root, Jobs: 2}
	stats, err := closure.Send(ctx, inProcessAgent{t}, infos, opts)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Sent != len(infos) {
		t.Errorf("sent %d paths, want %d", stats.Sent, len(infos))
	}
	for _, info := range infos {
		res, err := nar.HashPath(filepath.Join(root, info.Path))
		if err != nil || res.Hash != info.NarHash {
			t.Errorf("%s on the target: %s (%v), want %s", info.Path, res.Hash, err, info.NarHash)
		}
	}
	again, err := closure.Send(ctx, inProcessAgent{t}, infos, opts)
	if err != nil || again.Sent != 0 {
		t.Errorf("re-run sent %d paths (%v), want 0", again.Sent, err)
	}
}

func TestAgentUsage(t *testing.T) {
	abs := t.TempDir()
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, ExitUsage, "no verb"},
		{[]string{"dance"}, ExitUsage, `unknown verb "dance"`},
		{[]string{"receive"}, ExitUsage, "want --root"},
		{[]string{"receive", "--root", "relative"}, ExitUsage, "absolute"},
		{[]string{"query", "--root", abs, "extra"}, ExitUsage, "no other arguments"},
		{[]string{"query", "--bogus"}, ExitUsage, "unknown flag"},
		{[]string{"query", "--root", abs}, ExitFailure, "query: first line"},         // empty stdin
		{[]string{"receive", "--root", abs}, ExitFailure, "nixos-via agent receive"}, // empty stdin: no stream
		{[]string{"--help"}, ExitOK, ""},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		env := Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}
		code := finish(env, runAgent(context.Background(), env, tt.args))
		if code != tt.code || !strings.Contains(stderr.String(), tt.inStderr) {
			t.Errorf("agent %q: exit %d, stderr %q; want exit %d mentioning %q", tt.args, code, stderr.String(), tt.code, tt.inStderr)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(abs, "nix/store")); len(entries) != 0 {
		t.Errorf("failed receives left %d entries in the store", len(entries))
	}
}
