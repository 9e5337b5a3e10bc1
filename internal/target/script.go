package target

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/tail"
)

// scriptTail is how many of a script's last lines its error carries (of
// its last 64 KiB).
const scriptTail = 40

// Script is a shell script for Conn.Script to run on the target.
type Script struct {
	// Name says which script it is in its error ("copy host keys"). Empty
	// leaves the naming to the caller, who wraps the error.
	Name string
	Body string   // the script's text
	Args []string // its arguments: $1, $2, ...
	// Input is the script's stdin. Without it the script reads nothing.
	Input io.Reader
	// AsLogin runs it as the login user instead of root (no sudo or
	// doas). Without Input, Body is then fed to sh -s, so the host needs
	// nothing but sh (not even mktemp): none of its commands may read
	// stdin.
	AsLogin bool
	// OnLine, when set, gets each line the script prints, stdout and
	// stderr alike, as it comes; a failure's error then carries its last
	// 40 lines. Without OnLine, Script returns what it printed on stdout
	// and a failure's *ExitError carries the tail of its stderr.
	OnLine func(line string)
	// Stderr, when set (and OnLine is not), gets the script's stderr
	// instead of its error.
	Stderr io.Writer
	// Terminal, when set, runs the script as root with t as its
	// controlling terminal (see Terminal); OnLine, Stderr, Input and
	// AsLogin are ignored, and the error carries the last bytes it printed.
	Terminal *Terminal
}

// Script runs s on the target and returns what it printed on stdout (""
// when OnLine or Terminal takes its output). As root the script is stored
// in a temporary file first, so a command in it that reads stdin cannot
// eat the rest of it. A failure's error wraps *ExitError when the script
// ran and exited non-zero, and is prefixed with s.Name when it is set.
func (c *Conn) Script(ctx context.Context, s Script) (string, error) {
	if s.Terminal != nil {
		return "", c.runScriptOnTerminal(ctx, s.Name, s.Body, s.Args, *s.Terminal)
	}
	return runScript(ctx, s, c.Run, c.RunAsLogin)
}

// runFunc runs a shell command line with stdin, stdout and stderr
// attached: Conn.Run and Local.Run, as root or as the login user.
type runFunc func(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error

// runScript is Script (but for Terminal) through run, or asLogin for
// s.AsLogin: the one script runner of Conn and Local.
func runScript(ctx context.Context, s Script, run, asLogin runFunc) (string, error) {
	cmd, stdin := scriptCommand(s)
	if s.AsLogin {
		run = asLogin
	}
	if s.OnLine != nil {
		return "", scriptLines(ctx, s, run, cmd, stdin)
	}
	var out bytes.Buffer
	stderr := s.Stderr
	var errTail *tail.Buffer
	if stderr == nil {
		errTail = tail.New(4096)
		stderr = errTail
	}
	err := run(ctx, cmd, stdin, &out, stderr)
	if ee, ok := err.(*ExitError); ok && errTail != nil && ee.Stderr == "" {
		ee.Stderr = errTail.String()
	}
	if err != nil {
		return out.String(), nameErr(s.Name, err)
	}
	return out.String(), nil
}

// scriptLines runs cmd with the script's output going line by line to
// s.OnLine, keeping the last lines for the error.
func scriptLines(ctx context.Context, s Script, run runFunc, cmd string, stdin io.Reader) error {
	pr, pw := io.Pipe()
	last := tail.New(64 << 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			last.Write([]byte(sc.Text() + "\n"))
			s.OnLine(sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	err := run(ctx, cmd, stdin, pw, pw)
	pw.Close()
	<-done
	if err != nil {
		return nameErr(s.Name, fmt.Errorf("%w\n--- last lines ---\n%s", err, tail.Lines(last.String(), scriptTail)))
	}
	return nil
}

// scriptCommand is the command line that runs s, and its stdin.
func scriptCommand(s Script) (string, io.Reader) {
	args := ""
	for _, a := range s.Args {
		args += " " + ShellQuote(a)
	}
	switch {
	case s.Input != nil:
		// The script travels as an argument, so stdin stays its input.
		return fmt.Sprintf(`t=$(mktemp /tmp/nixos-via-script.XXXXXX) && printf '%%s' %s > "$t" && sh "$t"%s; st=$?; rm -f "$t"; exit $st`, ShellQuote(s.Body), args), s.Input
	case s.AsLogin:
		if args != "" {
			args = " --" + args
		}
		return "sh -s" + args, strings.NewReader(s.Body)
	}
	return `t=$(mktemp /tmp/nixos-via-script.XXXXXX) && cat > "$t" && sh "$t"` + args + ` < /dev/null; st=$?; rm -f "$t"; exit $st`, strings.NewReader(s.Body)
}

// nameErr prefixes err with name when there is one.
func nameErr(name string, err error) error {
	if name == "" {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
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

// runScriptOnTerminal stores the script first, then runs it in a session
// with a pseudo-terminal whose input is t.In and whose output goes to
// t.Out. On failure the error carries the last bytes it printed.
func (c *Conn) runScriptOnTerminal(ctx context.Context, name, script string, args []string, t Terminal) error {
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
	last := tail.New(4096)
	sess.Stdout = io.MultiWriter(t.Out, last)
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
	return fmt.Errorf("%w\n--- last output ---\n%s", err, strings.TrimSpace(strings.ReplaceAll(last.String(), "\r", "")))
}
