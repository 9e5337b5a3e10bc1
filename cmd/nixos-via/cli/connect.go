package cli

import (
	"os"

	"github.com/nixos-via/nixos-via/internal/connflags"
	"github.com/nixos-via/nixos-via/internal/flagtable"
	"github.com/nixos-via/nixos-via/internal/target"
)

// conn is how to reach the host, as the connection flags give it
// (package connflags); install, facts and deploy share it.
type conn struct{ connflags.Conn }

func (c *conn) flags() []flagtable.Flag     { return c.Flags(gTarget) }
func (c *conn) timeoutFlag() flagtable.Flag { return c.TimeoutFlag(gOut) }
func (c *conn) host(pos []string) error     { return c.Host(pos) }

// resolve is the target options with the secrets env gives.
func (c conn) resolve(env Env, warn func(string)) (target.Options, error) {
	return c.Resolve(env.Getenv, env.Stdin, env.Stderr, warn)
}

// terminal returns the file behind r when it is a terminal.
func terminal(r any) (*os.File, bool) { return connflags.Terminal(r) }
