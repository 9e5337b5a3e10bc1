package cli

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/nixos-via/nixos-via/internal/target"
)

// connFlags are the flags that say how to reach the host.
type connFlags struct {
	Host            string
	IdentityFile    string
	Port            int
	SSHOptions      []string
	EnvPassword     bool
	HostKey         string   // the first --host-key
	HostKeys        []string // every --host-key
	SudoPasswordEnv string
	TimeoutConnect  time.Duration
	Debug           bool
}

// terminal returns the file behind r when it is a terminal.
func terminal(r any) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// targetOptions turns the flags into target.Options. Secrets come from the
// environment or a terminal prompt, never from argv.
func (c connFlags) targetOptions(env Env, warn func(string)) (target.Options, error) {
	o := target.Options{
		Destination: c.Host,
		Port:        c.Port,
		SSHOptions:  c.SSHOptions,
		AgentSocket: env.Getenv("SSH_AUTH_SOCK"),
		HostKeyPin:  c.HostKey,
		HostKeyPins: c.HostKeys,
		Warn:        warn,
	}
	if c.Debug {
		o.Trace = func(cmd string) { fmt.Fprintf(env.Stderr, "+ ssh: %s\n", cmd) }
	}
	if c.IdentityFile != "" {
		o.IdentityFiles = []string{c.IdentityFile}
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
