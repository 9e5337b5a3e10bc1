package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nixos-via/nixos-via/internal/flagtable"
	"github.com/nixos-via/nixos-via/sequence"
)

// runFacts is `nixos-via facts [flags] [user@]host`: the connection flags
// of the drop-in command line, and its own.
func runFacts(ctx context.Context, env Env, args []string) error {
	var c conn
	var asJSON bool
	table := append(c.flags(), c.timeoutFlag(),
		flagtable.Flag{Name: "json", Group: gOut, Help: "print JSON", To: &asJSON},
		flagtable.Flag{Name: "help", Short: "h", Group: gOut, Help: "show help", To: new(bool)})
	fs, help, err := flagtable.Parse(table, args, c.OneHost)
	if help {
		fmt.Fprintln(env.Stdout, "Usage: nixos-via facts [--json] [-i KEY] [-p PORT] [--ssh-option OPT] [--host-key SHA256:FP] [user@]HOST")
		fmt.Fprint(env.Stdout, fs.FlagUsages())
		return nil
	}
	if err != nil {
		return usagef("facts: %v", err)
	}
	topts, err := c.resolve(env, func(m string) { fmt.Fprintln(env.Stderr, m) })
	if err != nil {
		return err
	}
	conn, facts, err := sequence.Connect(ctx, topts, home(env), c.Timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(facts)
	}
	facts.WriteTable(env.Stdout, conn.Resolved().Addr())
	return nil
}
