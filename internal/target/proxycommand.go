package target

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nixos-via/nixos-via/internal/pipecmd"
	"github.com/nixos-via/nixos-via/internal/tail"
)

// expandProxyCommand replaces OpenSSH's tokens in a ProxyCommand: %h the
// host name to connect to, %n the name as given, %p the port, %r the remote
// user, %% a percent sign.
func expandProxyCommand(cmd, host, alias string, port int, user string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(cmd); i++ {
		if cmd[i] != '%' {
			b.WriteByte(cmd[i])
			continue
		}
		if i+1 == len(cmd) {
			return "", fmt.Errorf("ProxyCommand %q: %% at the end", cmd)
		}
		i++
		switch cmd[i] {
		case '%':
			b.WriteByte('%')
		case 'h':
			b.WriteString(host)
		case 'n':
			b.WriteString(alias)
		case 'p':
			b.WriteString(strconv.Itoa(port))
		case 'r':
			b.WriteString(user)
		default:
			return "", fmt.Errorf("ProxyCommand %q: unknown token %%%c (known: %%h %%n %%p %%r %%%%)", cmd, cmd[i])
		}
	}
	return b.String(), nil
}

// cmdConn is a ProxyCommand's stdin and stdout as a net.Conn: SSH is
// spoken over them.
type cmdConn struct {
	cmd    *exec.Cmd
	line   string   // the expanded command, for errors
	rd     *os.File // its stdout
	wr     *os.File // its stdin
	remote net.Addr

	stderr    *lockedTail
	exited    chan struct{}
	waitErr   error
	closeOnce sync.Once
}

// dialProxyCommand starts res.ProxyCommand for res's host and port. What
// the command prints on stderr goes to res.Warn line by line (a login URL,
// say) and into errors.
func dialProxyCommand(res *Resolved) (*cmdConn, error) {
	line, err := expandProxyCommand(res.ProxyCommand, res.HostName, res.Alias, res.Port, res.User)
	if err != nil {
		return nil, err
	}
	c := &cmdConn{line: line, stderr: &lockedTail{last: tail.New(4096), warn: res.Warn}, exited: make(chan struct{})}
	c.cmd = exec.Command("/bin/sh", "-c", "exec "+line)
	c.cmd.Stderr = c.stderr
	// Pipes of our own (not exec's) so that reads and writes take deadlines.
	c.wr, c.rd, err = pipecmd.Start(c.cmd)
	if err != nil {
		return nil, fmt.Errorf("ProxyCommand %q: %w", line, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		c.stderr.flush()
		close(c.exited)
	}()
	ip := net.ParseIP(res.HostName)
	if ip == nil {
		ip = net.IPv4zero
	}
	c.remote = &net.TCPAddr{IP: ip, Port: res.Port}
	return c, nil
}

func (c *cmdConn) Read(p []byte) (int, error)  { return c.rd.Read(p) }
func (c *cmdConn) Write(p []byte) (int, error) { return c.wr.Write(p) }

// Close closes the pipes and hangs the command up (SIGHUP, as OpenSSH
// does: nc, for one, does not end at the end of its input); one still
// running a second later is killed.
func (c *cmdConn) Close() error {
	c.closeOnce.Do(func() {
		c.wr.Close()
		c.rd.Close()
		c.cmd.Process.Signal(syscall.SIGHUP)
		select {
		case <-c.exited:
		case <-time.After(time.Second):
			c.cmd.Process.Kill()
			<-c.exited
		}
	})
	return nil
}

func (c *cmdConn) LocalAddr() net.Addr  { return cmdAddr(c.line) }
func (c *cmdConn) RemoteAddr() net.Addr { return c.remote }

func (c *cmdConn) SetDeadline(t time.Time) error {
	return errors.Join(c.rd.SetReadDeadline(t), c.wr.SetWriteDeadline(t))
}
func (c *cmdConn) SetReadDeadline(t time.Time) error  { return c.rd.SetReadDeadline(t) }
func (c *cmdConn) SetWriteDeadline(t time.Time) error { return c.wr.SetWriteDeadline(t) }

// explain adds what the command said and how it ended to a handshake error.
func (c *cmdConn) explain(err error) error {
	select {
	case <-c.exited:
	case <-time.After(time.Second):
	}
	var what []string
	select {
	case <-c.exited:
		if c.waitErr != nil {
			what = append(what, "it ended: "+c.waitErr.Error())
		} else {
			what = append(what, "it ended")
		}
	default:
	}
	if said := strings.TrimSpace(c.stderr.String()); said != "" {
		what = append(what, "it said: "+said)
	}
	if len(what) == 0 {
		return err
	}
	msg := fmt.Sprintf("through ProxyCommand %q (%s)", c.line, strings.Join(what, "; "))
	var ce *ConnectError
	if errors.As(err, &ce) {
		return &ConnectError{Addr: ce.Addr, Err: fmt.Errorf("%w %s", ce.Err, msg)}
	}
	return fmt.Errorf("%w %s", err, msg)
}

type cmdAddr string

func (cmdAddr) Network() string  { return "proxycommand" }
func (a cmdAddr) String() string { return string(a) }

// lockedTail keeps the last bytes written (in last) and hands each
// complete line to warn.
type lockedTail struct {
	last *tail.Buffer
	warn func(string)

	mu      sync.Mutex
	pending []byte
}

func (t *lockedTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last.Write(p)
	t.pending = append(t.pending, p...)
	for {
		i := bytes.IndexByte(t.pending, '\n')
		if i < 0 {
			break
		}
		t.say(string(t.pending[:i]))
		t.pending = t.pending[i+1:]
	}
	return len(p), nil
}

func (t *lockedTail) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) > 0 {
		t.say(string(t.pending))
		t.pending = nil
	}
}

func (t *lockedTail) say(line string) {
	if line = strings.TrimRight(line, "\r"); line != "" && t.warn != nil {
		t.warn("ProxyCommand: " + line)
	}
}

func (t *lockedTail) String() string { return t.last.String() }

var (
	_ net.Conn  = (*cmdConn)(nil)
	_ io.Writer = (*lockedTail)(nil)
)
