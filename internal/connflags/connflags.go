// Package connflags is how the command line says how to reach a host:
// the connection flags every connecting subcommand shares (install,
// facts, deploy) and the target options they give, with the secrets read
// from the environment or a terminal, never from argv.
package connflags

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/nixos-via/nixos-via/internal/flagtable"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Conn is how to reach the host, as the connection flags give it: the
// target options but the secrets, where Resolve reads those, and the
// first connection's deadline. Every subcommand that connects declares
// its connection flags with Flags and TimeoutFlag, parses them with
// flagtable.Parse and dials with what Resolve returns.
type Conn struct {
	target.Options
	EnvPassword     bool
	SudoPasswordEnv string
	Timeout         time.Duration
	Debug           bool
}

// Flags are the flags that say how to reach the host, listed in --help
// under gTarget.
func (c *Conn) Flags(gTarget string) []flagtable.Flag {
	return []flagtable.Flag{
		{Name: "target-host", Group: gTarget, Arg: "HOST", Help: "the host to install, as [user@]host[:port] (same as the positional HOST)", To: &c.Destination},
		{Name: "identity-file", Short: "i", ShortOnly: true, Group: gTarget, Arg: "KEY", Help: "private key file for SSH (asks for its passphrase on a terminal)", To: c.identity},
		{Name: "ssh-port", Short: "p", Group: gTarget, Arg: "PORT", Help: "SSH port (default 22 or ssh_config's)", To: flagtable.Port(&c.Port, "-p/--ssh-port")},
		{Name: "ssh-option", Group: gTarget, Arg: "OPT", Help: "an OpenSSH -o option, e.g. ProxyJump=bastion, \"ProxyCommand=nc %h %p\", HostKeyAlgorithms=ssh-ed25519 (repeatable)", To: c.sshOptions},
		{Name: "env-password", Group: gTarget, Help: "authenticate with the password in $SSHPASS", To: &c.EnvPassword},
		{Name: "host-key", Group: gTarget, Arg: "SHA256:FP", Help: "accept only host keys with these fingerprints (repeatable; after kexec, any key of the host's set)", To: c.hostKeys},
		{Name: "sudo-password-env", Group: gTarget, Arg: "VAR", Help: "read the sudo password of a non-root login from $VAR (else asked on a terminal)", To: &c.SudoPasswordEnv},
	}
}

// TimeoutFlag is --timeout-connect, listed under gOut; it sets the
// default, 2m, as pflag's XxxVar do.
func (c *Conn) TimeoutFlag(gOut string) flagtable.Flag {
	c.Timeout = 2 * time.Minute
	return flagtable.Flag{Name: "timeout-connect", Group: gOut, Arg: "DUR", Help: "deadline for the first SSH connection (default 2m)", To: flagtable.Duration(&c.Timeout, "timeout-connect")}
}

func (c *Conn) identity(v string) error {
	if v != "" {
		c.IdentityFiles = []string{v}
	}
	return nil
}

func (c *Conn) sshOptions(v []string) error {
	c.SSHOptions = v
	if err := target.CheckSSHOptions(v); err != nil {
		return phase.Usagef("--ssh-option: %v", err)
	}
	return nil
}

func (c *Conn) hostKeys(v []string) error {
	for _, fp := range v {
		if !strings.HasPrefix(fp, "SHA256:") {
			return phase.Usagef("--host-key %q: want a SHA256:... fingerprint as ssh-keygen -lf prints it", fp)
		}
	}
	c.HostKeyPin, c.HostKeyPins = v[0], v
	return nil
}

// Host takes the positional host of the drop-in command line.
func (c *Conn) Host(pos []string) error {
	switch {
	case len(pos) > 1:
		return phase.Usagef("only one host may be given, got %q", pos)
	case len(pos) == 1 && c.Destination != "" && c.Destination != pos[0]:
		return phase.Usagef("two hosts given: --target-host %s and %s", c.Destination, pos[0])
	case len(pos) == 1:
		c.Destination = pos[0]
	}
	return nil
}

// OneHost takes the one host a command needs, given as pos or as
// --target-host (not both).
func (c *Conn) OneHost(pos []string) error {
	switch {
	case len(pos) == 1 && c.Destination == "":
		c.Destination = pos[0]
	case len(pos) == 0 && c.Destination != "":
	default:
		return phase.Usagef("want exactly one host, got %q", pos)
	}
	return nil
}

// Terminal returns the file behind r when it is a terminal.
func Terminal(r any) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// Resolve is the target options with what the environment (getenv, a
// terminal on stdin) gives: secrets from the environment or a terminal
// prompt, never from argv, the agent, the debug trace on stderr.
func (c Conn) Resolve(getenv func(string) string, stdin io.Reader, stderr io.Writer, warn func(string)) (target.Options, error) {
	o := c.Options
	o.AgentSocket, o.Warn = getenv("SSH_AUTH_SOCK"), warn
	if c.Debug {
		o.Trace = func(cmd string) { fmt.Fprintf(stderr, "+ ssh: %s\n", cmd) }
	}
	if c.EnvPassword {
		o.Password = getenv("SSHPASS")
		if o.Password == "" {
			return o, phase.Usagef("--env-password: $SSHPASS is empty")
		}
	}
	if c.SudoPasswordEnv != "" {
		o.SudoPassword = getenv(c.SudoPasswordEnv)
		if o.SudoPassword == "" {
			return o, phase.Usagef("--sudo-password-env %s: $%s is empty", c.SudoPasswordEnv, c.SudoPasswordEnv)
		}
	}
	if in, ok := Terminal(stdin); ok {
		o.Prompt = target.TerminalPrompt(in, stderr)
	}
	return o, nil
}
