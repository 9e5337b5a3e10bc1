package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// Local runs commands on this machine, as the user nixos-via runs as, with
// the same Run, Output and Script as a Conn: the install steps that a local
// install (install-to-dir) runs against a directory here go through it
// instead of an SSH session. Commands run with `sh -c`; a script that needs
// a terminal (Script.Terminal) is refused.
type Local struct{}

// localStopGrace is how long a command has to exit after SIGTERM once
// its context ended, before it is killed.
const localStopGrace = 5 * time.Second

// Run runs cmd with sh -c. The error wraps *ExitError when cmd ran and
// failed, and is ctx's error when ctx ended it.
func (Local) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = localStopGrace
	err := c.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		e := &ExitError{Cmd: shortCmd(cmd), Status: ee.ExitCode()}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = ws.Signal().String()
		}
		return e
	}
	return fmt.Errorf("run %s: %w", shortCmd(cmd), err)
}

// Output runs cmd and returns its stdout; stderr is kept for the error.
func (l Local) Output(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	return output(ctx, l.Run, cmd, stdin)
}

// Script runs s on this machine as Conn.Script runs it on the target
// (AsLogin makes no difference here).
func (l Local) Script(ctx context.Context, s Script) (string, error) {
	if s.Terminal != nil {
		return "", nameErr(s.Name, errors.New("a script on a terminal runs only over SSH"))
	}
	return runScript(ctx, s, l.Run, l.Run)
}
