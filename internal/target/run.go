package target

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/tail"
)

// Escalation is how the login user becomes root for a command.
type Escalation string

const (
	EscalateNone Escalation = "none" // logged in as root
	EscalateSudo Escalation = "sudo"
	EscalateDoas Escalation = "doas"
)

// ExitError is a remote command that ran and exited non-zero (or was killed).
type ExitError struct {
	Cmd    string // a short name for the command, never its secrets
	Status int    // -1 when killed by a signal or the connection dropped
	Signal string
	Stderr string // the tail of stderr, when captured
	// Lost says the connection went away before the command's exit
	// status came (Status is -1): the command may well have succeeded.
	Lost bool
}

func (e *ExitError) Error() string {
	s := fmt.Sprintf("%s: exit %d", e.Cmd, e.Status)
	if e.Signal != "" {
		s = fmt.Sprintf("%s: killed by signal %s", e.Cmd, e.Signal)
	}
	if t := strings.TrimSpace(e.Stderr); t != "" {
		s += ": " + t
	}
	return s
}

// SetEscalation says how Run becomes root from now on (after the probe).
// With needsPassword, sudo is given Options.SudoPassword on stdin; without
// it, sudo must not ask (sudo -n), so no password can end up as input.
func (c *Conn) SetEscalation(e Escalation, needsPassword bool) {
	c.mu.Lock()
	c.escalate = e
	c.sudoPassword = needsPassword
	c.mu.Unlock()
}

// Escalation is what Run uses to become root.
func (c *Conn) Escalation() Escalation {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.escalate == "" {
		return EscalateNone
	}
	return c.escalate
}

// Run runs cmd (a shell command line) as root on the target: directly when
// logged in as root, else wrapped in sudo or doas. stdin, stdout and stderr
// may be nil. A sudo password is fed on stdin before the command's own input
// and never appears in argv. The error wraps *ExitError when cmd fails.
func (c *Conn) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	wrapped, pre := c.wrap(cmd)
	if pre != "" {
		if stdin == nil {
			stdin = strings.NewReader(pre)
		} else {
			stdin = io.MultiReader(strings.NewReader(pre), stdin)
		}
	}
	return c.RunAsLogin(ctx, wrapped, stdin, stdout, stderr)
}

// Output runs cmd as root and returns its stdout; stderr is kept for the error.
func (c *Conn) Output(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	return output(ctx, c.Run, cmd, stdin)
}

// output is Output through run: Conn's and Local's.
func output(ctx context.Context, run runFunc, cmd string, stdin io.Reader) ([]byte, error) {
	var out bytes.Buffer
	errb := tail.New(4096)
	err := run(ctx, cmd, stdin, &out, errb)
	var ee *ExitError
	if errors.As(err, &ee) && ee.Stderr == "" {
		ee.Stderr = errb.String()
	}
	return out.Bytes(), err
}

func (c *Conn) wrap(cmd string) (string, string) {
	c.mu.Lock()
	needsPassword := c.sudoPassword
	c.mu.Unlock()
	switch c.Escalation() {
	case EscalateSudo:
		if needsPassword {
			// -S reads the password from stdin byte by byte up to the
			// newline, so the rest of stdin stays the command's; -k makes
			// sudo always ask, so the line is never left for the command.
			return "sudo -S -k -p '' -- sh -c " + ShellQuote(cmd), c.res.SudoPassword + "\n"
		}
		return "sudo -n -- sh -c " + ShellQuote(cmd), ""
	case EscalateDoas:
		return "doas -n -- sh -c " + ShellQuote(cmd), ""
	}
	return cmd, ""
}

// RunAsLogin runs cmd as the login user, without escalation.
func (c *Conn) RunAsLogin(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if c.res.Trace != nil {
		c.res.Trace(shortCmd(cmd))
	}
	sess, err := c.client.NewSession()
	if err != nil {
		return fmt.Errorf("ssh %s: new session: %w", c.res.Addr(), err)
	}
	defer sess.Close()
	if sameWriter(stdout, stderr) {
		// The session copies stdout and stderr in two goroutines; one
		// writer for both must not be written concurrently (a
		// bytes.Buffer would lose data through its ReadFrom).
		w := &lockedWriter{w: stdout}
		stdout, stderr = w, w
	}
	sess.Stdin = stdin
	sess.Stdout = stdout
	sess.Stderr = stderr
	if err := sess.Start(cmd); err != nil {
		return fmt.Errorf("ssh %s: start %s: %w", c.res.Addr(), shortCmd(cmd), err)
	}
	return c.wait(ctx, sess, shortCmd(cmd))
}

// wait waits for a started session to end (name says which command in
// errors). On ctx's end it asks the remote side to stop and closes the
// channel, without waiting for a command that ignores both. A command that
// ran and failed is an *ExitError.
func (c *Conn) wait(ctx context.Context, sess *ssh.Session, name string) error {
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		sess.Close()
		return ctx.Err()
	}
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Cmd: name, Status: ee.ExitStatus(), Signal: ee.Signal()}
	}
	var em *ssh.ExitMissingError
	if errors.As(err, &em) {
		return &ExitError{Cmd: name, Status: -1, Signal: "(connection lost before the exit status)", Lost: true}
	}
	return fmt.Errorf("ssh %s: %s: %w", c.res.Addr(), name, err)
}

// shortCmd names a command for messages: its first line, shortened.
func shortCmd(cmd string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(cmd), "\n")
	if len(line) > 60 {
		line = line[:57] + "..."
	}
	return line
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sameWriter says a and b are the same pointer (comparing other kinds of
// values could panic).
func sameWriter(a, b io.Writer) bool {
	if a == nil || b == nil {
		return false
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Kind() == reflect.Pointer && vb.Kind() == reflect.Pointer && va.Pointer() == vb.Pointer()
}

// lockedWriter serialises writes (and hides io.ReaderFrom).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
