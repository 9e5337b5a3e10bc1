package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nixos-via/nixos-via/sequence"
)

// factsSpecs are the flags of facts: the connection flags of the drop-in
// command line, and its own.
func factsSpecs() []flagSpec {
	return append(connSpecs(), timeoutConnectSpec,
		flagSpec{name: "json", group: gOut, help: "print JSON"},
		flagSpec{name: "help", short: "h", group: gOut, help: "show help"})
}

// runFacts is `nixos-via facts [flags] [user@]host`.
func runFacts(ctx context.Context, env Env, args []string) error {
	fs, _ := newFlagSet("nixos-via facts", factsSpecs())
	if err := fs.Parse(args); err != nil {
		return usagef("facts: %v", err)
	}
	a := argv{fs: fs}
	if a.boolean("help") {
		fmt.Fprintln(env.Stdout, "Usage: nixos-via facts [--json] [-i KEY] [-p PORT] [--ssh-option OPT] [--host-key SHA256:FP] [user@]HOST")
		fmt.Fprint(env.Stdout, fs.FlagUsages())
		return nil
	}
	var c connFlags
	c.Host = a.str("target-host")
	switch pos := fs.Args(); {
	case len(pos) == 1 && c.Host == "":
		c.Host = pos[0]
	case len(pos) == 0 && c.Host != "":
	default:
		return usagef("facts: want exactly one host, got %q", pos)
	}
	if err := a.conn(&c); err != nil {
		return usagef("facts: %v", err)
	}
	topts, err := c.targetOptions(env, func(m string) { fmt.Fprintln(env.Stderr, m) })
	if err != nil {
		return err
	}
	conn, facts, err := sequence.Connect(ctx, topts, home(env), c.TimeoutConnect)
	if err != nil {
		return err
	}
	defer conn.Close()
	if a.boolean("json") {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(facts)
	}
	facts.WriteTable(env.Stdout, conn.Resolved().Addr())
	return nil
}
