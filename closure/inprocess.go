package closure

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// Verbs are the agent's verbs (`nixos-via agent VERB --root DIR`), each
// reading its input on stdin and answering on stdout.
func Verbs() []string { return []string{"query", "receive", "substitute"} }

// Serve runs one agent verb (of Verbs) for root: AnswerQuery,
// ServeReceive or ServeSubstitute.
func Serve(ctx context.Context, verb string, stdin io.Reader, stdout io.Writer, root string) error {
	switch verb {
	case "query":
		return AnswerQuery(ctx, stdin, stdout, root)
	case "receive":
		return ServeReceive(ctx, stdin, stdout, root)
	case "substitute":
		return ServeSubstitute(ctx, stdin, stdout, root)
	}
	return fmt.Errorf("agent: unknown verb %q", verb)
}

// InProcessAgent is SendOptions.Agent for an InProcess runner.
const InProcessAgent = "nixos-via"

// InProcess is a Runner for a target root that is a directory of this
// machine (install-to-dir): the agent's commands that Send starts for
// Root (with Agent InProcessAgent) run in this process, each reading
// Send's stream through a pipe, so the same receiver restores, checks
// and records every path as `agent receive` does over SSH. Any other
// command is refused.
type InProcess struct{ Root string }

// Run runs the agent verb that cmd names, with stdin and stdout as the
// agent's; stderr stays unused (the error says what failed).
func (p InProcess) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, _ io.Writer) error {
	for _, verb := range Verbs() {
		if cmd == agentCommand(SendOptions{Agent: InProcessAgent, Root: p.Root}, verb) {
			if stdin == nil {
				stdin = eofReader{}
			}
			if stdout == nil {
				stdout = io.Discard
			}
			if err := Serve(ctx, verb, stdin, stdout, p.Root); err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
			return nil
		}
	}
	return fmt.Errorf("in-process agent for %s: not an agent command: %q", p.Root, cmd)
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// RecordRegistered records infos, paths the root's Nix database already
// has as valid (`nix-store --dump-db`), as received: a later Send's query
// answers them present where they are in the store with the narHash it
// wants, so re-running an install into a registered root sends only what
// is missing. It writes one batch record file, as a commit does.
func RecordRegistered(root string, infos []nix.PathInfo) error {
	l, err := newLayout(root)
	if err != nil {
		return err
	}
	if len(infos) == 0 {
		return nil
	}
	if err := l.mkdirs(); err != nil {
		return fmt.Errorf("record registered paths: %w", err)
	}
	data, err := encodeRecords(infos)
	if err != nil {
		return fmt.Errorf("record registered paths: %w", err)
	}
	name := recordName()
	tmp := filepath.Join(l.validDir(), tmpPrefix+name)
	if err := writeFile(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(l.validDir(), name)); err != nil {
		return fmt.Errorf("record registered paths: %w", err)
	}
	return nil
}
