package cli

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/internal/flagtable"
)

const agentUsage = `Usage: nixos-via agent query   --root DIR   (list which wanted store paths are valid under DIR)
       nixos-via agent receive --root DIR   (receive a closure stream on stdin into DIR/nix/store,
                                             answering a query that comes first on stdout)
       nixos-via agent substitute --root DIR
                                            (fetch the store paths a request on stdin names from its
                                             binary caches into DIR/nix/store, checked against the
                                             request's narHash; say on stdout which it got)

The on-target helper: nixos-via uploads itself to the target and runs these
verbs over SSH; they read their input on stdin. Not meant to be run by hand.
`

// runAgent is `nixos-via agent VERB --root DIR` (args exclude "agent").
func runAgent(ctx context.Context, env Env, args []string) error {
	usage := func(format string, a ...any) error {
		return &commandError{prefix: "nixos-via agent", help: agentUsage, err: usagef(format, a...)}
	}
	if len(args) == 0 {
		return usage("no verb")
	}
	verb := args[0]
	if verb == "-h" || verb == "--help" || verb == "help" {
		fmt.Fprint(env.Stdout, agentUsage)
		return nil
	}
	if !slices.Contains(closure.Verbs(), verb) {
		return usage("unknown verb %q", verb)
	}
	prefix := "nixos-via agent " + verb
	var root string
	table := []flagtable.Flag{{Name: "root", Arg: "DIR", Help: "target root whose nix/store receives the closure", To: &root}}
	if _, _, err := flagtable.Parse(table, args[1:], func(pos []string) error {
		if len(pos) != 0 || !filepath.IsAbs(root) {
			return usagef("want --root with an absolute directory and no other arguments")
		}
		return nil
	}); err != nil {
		return &commandError{prefix: prefix, help: agentUsage, err: err}
	}
	// A dropped SSH session may deliver SIGHUP: end cleanly, so that Receive
	// still commits the paths it has verified when its stdin ends.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP, syscall.SIGTERM)
	defer stop()
	err := closure.Serve(ctx, verb, env.Stdin, env.Stdout, root)
	if errors.Is(err, context.Canceled) {
		err = fmt.Errorf("interrupted: %w", err)
	}
	if err != nil {
		return &commandError{prefix: prefix, err: err}
	}
	return nil
}
