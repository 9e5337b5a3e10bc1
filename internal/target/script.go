package target

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"
)

// scriptTail is how many of a script's last lines its error carries.
const scriptTail = 40

// RunScript runs a shell script as root on the target with args, handing
// each line it prints (stdout and stderr) to line as it comes. The script is
// stored in a temporary file first and run with no input, so a command in it
// that reads stdin cannot eat the rest of the script. On failure the error
// (named name, wrapping *ExitError) carries the last lines it printed.
func (c *Conn) RunScript(ctx context.Context, name, script string, args []string, line func(string)) error {
	pr, pw := io.Pipe()
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			tail = append(tail, sc.Text())
			if len(tail) > scriptTail {
				tail = tail[len(tail)-scriptTail:]
			}
			line(sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = ShellQuote(a)
	}
	cmd := `t=$(mktemp /tmp/nixos-via-script.XXXXXX) && cat > "$t" && sh "$t" ` + strings.Join(quoted, " ") + ` < /dev/null; st=$?; rm -f "$t"; exit $st`
	err := c.Run(ctx, cmd, strings.NewReader(script), pw, pw)
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("%s: %w\n--- last lines ---\n%s", name, err, strings.Join(tail, "\n"))
	}
	return nil
}

// Terminal is a person's terminal that a script run talks to through a
// pseudo-terminal on the target, so that it can ask for a passphrase on
// /dev/tty. The caller puts the local side in raw mode; the remote side
// starts with echo off, so what is typed is never printed, and no line of
// the exchange is handed to a log.
type Terminal struct {
	In            io.Reader
	Out           io.Writer
	Term          string // $TERM, "" for "xterm"
	Width, Height int
}

// RunScriptOnTerminal runs a shell script as root on the target, like
// RunScript, but with t as its controlling terminal: the script is stored
// first, then run in a session with a pseudo-terminal whose input is t.In
// and whose output goes to t.Out. On failure the error carries the last
// bytes it printed.
func (c *Conn) RunScriptOnTerminal(ctx context.Context, name, script string, args []string, t Terminal) error {
	out, err := c.Output(ctx, `umask 077 && t=$(mktemp /tmp/nixos-via-script.XXXXXX) && cat > "$t" && printf '%s\n' "$t"`, strings.NewReader(script))
	if err != nil {
		return fmt.Errorf("%s: store the script: %w", name, err)
	}
	path := strings.TrimSpace(string(out))
	quoted := []string{"sh", ShellQuote(path)}
	for _, a := range args {
		quoted = append(quoted, ShellQuote(a))
	}
	cmd := strings.Join(quoted, " ") + "; st=$?; rm -f " + ShellQuote(path) + "; exit $st"
	wrapped, pre := c.wrap(cmd)
	if c.res.Trace != nil {
		c.res.Trace(shortCmd(wrapped))
	}
	sess, err := c.client.NewSession()
	if err != nil {
		return fmt.Errorf("%s: ssh %s: new session: %w", name, c.res.Addr(), err)
	}
	defer sess.Close()
	termName, w, h := t.Term, t.Width, t.Height
	if termName == "" {
		termName = "xterm"
	}
	if w <= 0 || h <= 0 {
		w, h = 80, 24
	}
	// Echo off from the start: a sudo password fed ahead of the input and
	// every passphrase stay off the screen.
	modes := ssh.TerminalModes{ssh.ECHO: 0, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty(termName, h, w, modes); err != nil {
		return fmt.Errorf("%s: ssh %s: request a terminal: %w", name, c.res.Addr(), err)
	}
	var tail bytes.Buffer
	tw := &tailWriter{buf: &tail, max: 4096}
	sess.Stdout = io.MultiWriter(t.Out, tw)
	stdin, err := sess.StdinPipe()
	if err != nil {
		return fmt.Errorf("%s: ssh %s: %w", name, c.res.Addr(), err)
	}
	if err := sess.Start(wrapped); err != nil {
		return fmt.Errorf("%s: ssh %s: start: %w", name, c.res.Addr(), err)
	}
	go func() {
		if pre != "" {
			io.WriteString(stdin, pre)
		}
		io.Copy(stdin, t.In)
	}()
	err = c.wait(ctx, sess, name)
	if err == nil || ctx.Err() != nil {
		return err
	}
	return fmt.Errorf("%w\n--- last output ---\n%s", err, strings.TrimSpace(strings.ReplaceAll(tail.String(), "\r", "")))
}
