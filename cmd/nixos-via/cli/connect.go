package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/nixos-via/nixos-via/internal/flagtable"
	"github.com/nixos-via/nixos-via/internal/target"
)

// conn is how to reach the host, as the connection flags give it: the
// target options but the secrets, where resolve reads those, and the
// first connection's deadline. Every subcommand that connects (install,
// facts) declares its connection flags with flags and timeoutFlag, parses
// them with flagtable.Parse and dials with what resolve returns.
type conn struct {
	target.Options
	EnvPassword     bool
	SudoPasswordEnv string
	Timeout         time.Duration
	Debug           bool
}

// flags are the flags that say how to reach the host.
func (c *conn) flags() []flagtable.Flag {
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

// timeoutFlag is --timeout-connect; it sets the default, 2m, as pflag's
// XxxVar do.
func (c *conn) timeoutFlag() flagtable.Flag {
	c.Timeout = 2 * time.Minute
	return flagtable.Flag{Name: "timeout-connect", Group: gOut, Arg: "DUR", Help: "deadline for the first SSH connection (default 2m)", To: flagtable.Duration(&c.Timeout, "timeout-connect")}
}

func (c *conn) identity(v string) error {
	if v != "" {
		c.IdentityFiles = []string{v}
	}
	return nil
}

func (c *conn) sshOptions(v []string) error {
	c.SSHOptions = v
	if err := target.CheckSSHOptions(v); err != nil {
		return usagef("--ssh-option: %v", err)
	}
	return nil
}

func (c *conn) hostKeys(v []string) error {
	for _, fp := range v {
		if !strings.HasPrefix(fp, "SHA256:") {
			return usagef("--host-key %q: want a SHA256:... fingerprint as ssh-keygen -lf prints it", fp)
		}
	}
	c.HostKeyPin, c.HostKeyPins = v[0], v
	return nil
}

// host takes the positional host of the drop-in command line.
func (c *conn) host(pos []string) error {
	switch {
	case len(pos) > 1:
		return usagef("only one host may be given, got %q", pos)
	case len(pos) == 1 && c.Destination != "" && c.Destination != pos[0]:
		return usagef("two hosts given: --target-host %s and %s", c.Destination, pos[0])
	case len(pos) == 1:
		c.Destination = pos[0]
	}
	return nil
}

// terminal returns the file behind r when it is a terminal.
func terminal(r any) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// resolve is the target options with what the environment gives: secrets
// from the environment or a terminal prompt, never from argv, the agent,
// the debug trace.
func (c conn) resolve(env Env, warn func(string)) (target.Options, error) {
	o := c.Options
	o.AgentSocket, o.Warn = env.Getenv("SSH_AUTH_SOCK"), warn
	if c.Debug {
		o.Trace = func(cmd string) { fmt.Fprintf(env.Stderr, "+ ssh: %s\n", cmd) }
	}
	if c.EnvPassword {
		o.Password = env.Getenv("SSHPASS")
		if o.Password == "" {
			return o, usagef("--env-password: $SSHPASS is empty")
		}
	}
	if c.SudoPasswordEnv != "" {
		o.SudoPassword = env.Getenv(c.SudoPasswordEnv)
		if o.SudoPassword == "" {
			return o, usagef("--sudo-password-env %s: $%s is empty", c.SudoPasswordEnv, c.SudoPasswordEnv)
		}
	}
	if in, ok := terminal(env.Stdin); ok {
		o.Prompt = target.TerminalPrompt(in, env.Stderr)
	}
	return o, nil
}
