package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/nixos-via/nixos-via/sequence"
)

// runFacts is `nixos-via facts [flags] [user@]host`.
func runFacts(ctx context.Context, env Env, args []string) error {
	fs := pflag.NewFlagSet("nixos-via facts", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c connFlags
	var port, timeout string
	var asJSON, help bool
	fs.StringVar(&c.Host, "target-host", "", "the host")
	fs.StringVarP(&c.IdentityFile, "identity-file", "i", "", "private key file")
	fs.StringVarP(&port, "ssh-port", "p", "", "SSH port")
	fs.StringArrayVar(&c.SSHOptions, "ssh-option", nil, "OpenSSH -o option (repeatable)")
	fs.BoolVar(&c.EnvPassword, "env-password", false, "password from $SSHPASS")
	fs.StringVar(&c.HostKey, "host-key", "", "accept only this host key fingerprint")
	fs.StringVar(&c.SudoPasswordEnv, "sudo-password-env", "", "sudo password from $VAR")
	fs.StringVar(&timeout, "timeout-connect", "2m", "deadline for connecting")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.BoolVarP(&help, "help", "h", false, "show help")
	if err := fs.Parse(args); err != nil {
		return usagef("facts: %v", err)
	}
	if help {
		fmt.Fprintln(env.Stdout, "Usage: nixos-via facts [--json] [-i KEY] [-p PORT] [--ssh-option OPT] [--host-key SHA256:FP] [user@]HOST")
		fmt.Fprint(env.Stdout, fs.FlagUsages())
		return nil
	}
	switch pos := fs.Args(); {
	case len(pos) == 1 && c.Host == "":
		c.Host = pos[0]
	case len(pos) == 0 && c.Host != "":
	default:
		return usagef("facts: want exactly one host, got %q", pos)
	}
	if port != "" {
		p, err := parsePort(port)
		if err != nil {
			return usagef("facts: -p: %v", err)
		}
		c.Port = p
	}
	d, err := time.ParseDuration(timeout)
	if err != nil || d <= 0 {
		return usagef("facts: --timeout-connect %q: want a duration like 30s", timeout)
	}
	c.TimeoutConnect = d
	topts, err := c.targetOptions(env, func(m string) { fmt.Fprintln(env.Stderr, m) })
	if err != nil {
		return err
	}
	conn, facts, err := sequence.Connect(ctx, topts, home(env), c.TimeoutConnect)
	if err != nil {
		return err
	}
	defer conn.Close()
	if asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(facts)
	}
	printFacts(env.Stdout, conn.Resolved().Addr(), facts)
	return nil
}
