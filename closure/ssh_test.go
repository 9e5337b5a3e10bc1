package closure

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// dialVia connects as root to s through proxy p.
func dialVia(t *testing.T, s *sshtest.Server, p *sshtest.Proxy) *target.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := target.Dial(ctx, target.Options{
		Destination:    fmt.Sprintf("root@127.0.0.1:%d", p.Port),
		IdentityFiles:  []string{s.ClientKey},
		PinnedKey:      s.HostKey,
		SSHConfigFile:  "none",
		ConnectTimeout: 5 * time.Second,
	}, t.TempDir())
	if err != nil {
		t.Fatalf("dial %s via proxy: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wireBytes runs f on a fresh connection through p and returns the bytes the
// client sent over TCP (handshake included).
func wireBytes(t *testing.T, s *sshtest.Server, p *sshtest.Proxy, f func(c *target.Conn)) int64 {
	t.Helper()
	before := p.BytesToTarget()
	c := dialVia(t, s, p)
	f(c)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := p.BytesToTarget() - before
		if n > 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSendOverSSH(t *testing.T) {
	sshtest.Need(t)
	_, infos := nixtest.Closure(t, "install-ssh")
	var total uint64
	for _, info := range infos {
		total += info.NarSize
	}
	s := sshtest.Start(t, sshtest.Options{})
	p := sshtest.StartProxy(t, s.Addr)
	root := t.TempDir()
	opts := SendOptions{Agent: agentBin, Root: root, Jobs: 2}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var first SendStats
	firstWire := wireBytes(t, s, p, func(c *target.Conn) {
		var err error
		if first, err = Send(ctx, c, infos, opts); err != nil {
			t.Fatal(err)
		}
	})
	if first.Sent != len(infos) {
		t.Fatalf("first run sent %d paths, want %d", first.Sent, len(infos))
	}
	checkReceived(t, root, infos)
	checkNoPartial(t, root, false)
	t.Logf("first run: %d paths, %d NAR bytes, %d stream bytes, %d bytes on the wire", first.Sent, first.NarBytes, first.WireBytes, firstWire)
	if firstWire < int64(first.WireBytes) {
		t.Errorf("wire carried %d bytes, less than the %d stream bytes", firstWire, first.WireBytes)
	}

	var again SendStats
	start := time.Now()
	againWire := wireBytes(t, s, p, func(c *target.Conn) {
		var err error
		if again, err = Send(ctx, c, infos, opts); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("re-run: %+v, %d bytes on the wire, %v", again, againWire, time.Since(start))
	if again.Sent != 0 || again.Present != len(infos) {
		t.Errorf("re-run sent %d paths, want 0", again.Sent)
	}
	// The SSH handshake and one query session, nothing like the closure.
	if againWire > 32<<10 || againWire*20 > int64(total) {
		t.Errorf("re-run put %d bytes on the wire, want only a handshake and the query (closure is %d bytes)", againWire, total)
	}
}

// proxyCutRunner cuts every connection through p once after bytes of an
// `agent receive` stream have been handed to SSH.
type proxyCutRunner struct {
	Runner
	p      *sshtest.Proxy
	after  int64
	before func() // runs just before the cut
	once   sync.Once
	fired  atomic.Bool
}

func (r *proxyCutRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if strings.Contains(cmd, " receive ") {
		stdin = &testutil.CutReader{R: stdin, N: r.after, Continue: true, Cut: func() {
			r.once.Do(func() {
				if r.before != nil {
					r.before()
				}
				r.fired.Store(true)
				r.p.Cut()
			})
		}}
	}
	return r.Runner.Run(ctx, cmd, stdin, stdout, stderr)
}

func TestSendOverSSHCutThenResume(t *testing.T) {
	sshtest.Need(t)
	_, infos := nixtest.Closure(t, "install-ssh")
	s := sshtest.Start(t, sshtest.Options{})
	p := sshtest.StartProxy(t, s.Addr)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Paths go biggest first: blob-a (2 MiB), then blob-b (1 MiB). Cut once
	// 300 KiB of blob-b went out (more than a zstd block, 128 KiB, so the
	// whole of blob-a is out at any level) and the agent has restored all of
	// blob-a, so the cut lands inside blob-b.
	var blobA string
	var after int64
	for _, info := range infos {
		if strings.Contains(info.Path, "-via-blob-a-") {
			blobA, after = info.Path, int64(info.NarSize)+300<<10
		}
	}
	cut := &proxyCutRunner{Runner: dialVia(t, s, p), p: p, after: after, before: func() {
		waitForFile(t, filepath.Join(root, "nix/store"), tmpPrefix+filepath.Base(blobA), "random", 2<<20)
	}}
	_, err := Send(ctx, cut, infos, SendOptions{Agent: agentBin, Root: root})
	if !cut.fired.Load() {
		t.Fatalf("the proxy was never cut; Send returned %v", err)
	}
	if err == nil {
		t.Fatal("Send across a cut connection succeeded")
	}
	t.Logf("cut: %v", err)
	waitAgentsGone(t, root)
	complete := checkNoPartial(t, root, true)
	t.Logf("%d of %d paths complete after the cut", complete, len(infos))
	if complete == len(infos) {
		t.Fatalf("all paths complete despite the cut")
	}
	if _, err := os.Stat(filepath.Join(root, blobA)); err != nil {
		t.Errorf("blob-a, verified before the cut, was not kept: %v", err)
	}

	c2 := dialVia(t, s, p)
	stats, err := Send(ctx, c2, infos, SendOptions{Agent: agentBin, Root: root, Jobs: 2})
	if err != nil {
		t.Fatalf("re-run after the cut: %v", err)
	}
	t.Logf("re-run: %d present, %d sent", stats.Present, stats.Sent)
	if stats.Present != complete || stats.Sent != len(infos)-complete {
		t.Errorf("re-run stats %+v, want %d present and %d sent", stats, complete, len(infos)-complete)
	}
	checkReceived(t, root, infos)
	checkNoPartial(t, root, false)
}

// waitAgentsGone waits until no agent process for root is left on the
// "target" (sshd ends them when the connection drops).
func waitAgentsGone(t *testing.T, root string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-f", "agent receive --root "+root).Output()
		if strings.TrimSpace(string(out)) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent processes still running 10s after the cut: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForFile waits until dir has an entry whose name starts with prefix
// and that holds file with size bytes.
func waitForFile(t *testing.T, dir, prefix, file string, size int64) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				if fi, err := os.Stat(filepath.Join(dir, e.Name(), file)); err == nil && fi.Size() == size {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("no complete %s*/%s in %s after 10s", prefix, file, dir)
}
