package closure

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// agentBin is the agent binary built once in TestMain.
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "closure-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin, err = buildAgent(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildAgent builds the agent the tests run "on the target": the real
// nixos-via binary when its CLI dispatches `agent`, else the minimal
// closure/internal/testagent with the same verbs.
func buildAgent(dir string) (string, error) {
	build := func(out, pkg string) error {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		return nil
	}
	real := filepath.Join(dir, "nixos-via")
	if err := build(real, "../cmd/nixos-via"); err == nil {
		out, err := exec.Command(real, "agent", "--help").Output()
		if err == nil && strings.Contains(string(out), "agent receive") {
			return real, nil
		}
	}
	fmt.Fprintln(os.Stderr, "closure tests: nixos-via does not dispatch `agent` (yet); using closure/internal/testagent")
	test := filepath.Join(dir, "testagent")
	return test, build(test, "./internal/testagent")
}

// localRunner runs commands as a real subprocess via sh -c, standing in for
// an SSH session to the target. Like an SSH session, Run returns once the
// command has exited and its output is read, without waiting for the rest of
// stdin (exec.Cmd would wait for its stdin copy to end).
type localRunner struct {
	sessions atomic.Int64
}

func (l *localRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	l.sessions.Add(1)
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdout, c.Stderr = stdout, stderr
	c.WaitDelay = 5 * time.Second
	w, err := c.StdinPipe()
	if err != nil {
		return err
	}
	go func() {
		if stdin != nil {
			io.Copy(w, stdin)
		}
		w.Close()
	}()
	if err := c.Run(); err != nil {
		return fmt.Errorf("sh -c %q: %w", cmd, err)
	}
	return nil
}

// cuttingRunner cuts the first `agent receive` once cutAfter bytes of its
// stdin have passed: with kill, the agent is killed outright (SIGKILL);
// without, its stdin ends as when sshd drops a session.
type cuttingRunner struct {
	localRunner
	cutAfter int64
	kill     bool
	once     sync.Once
	cut      atomic.Bool
}

func (c *cuttingRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if !strings.Contains(cmd, " receive ") {
		return c.localRunner.Run(ctx, cmd, stdin, stdout, stderr)
	}
	armed := false
	c.once.Do(func() { armed = true })
	if !armed {
		return c.localRunner.Run(ctx, cmd, stdin, stdout, stderr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &testutil.CutReader{R: stdin, N: c.cutAfter, Cut: func() {
		c.cut.Store(true)
		if c.kill {
			cancel()
		}
	}}
	return c.localRunner.Run(ctx, cmd, r, stdout, stderr)
}

// checkReceived compares every path of infos under root with the local store,
// file by file and by NAR hash, and checks its record.
func checkReceived(t *testing.T, root string, infos []nix.PathInfo) {
	t.Helper()
	for _, info := range infos {
		dst := filepath.Join(root, info.Path)
		want, got := testutil.Snapshot(t, info.Path, fs.ModePerm), testutil.Snapshot(t, dst, fs.ModePerm)
		if len(want) != len(got) {
			t.Errorf("%s: %d entries on the target, want %d", info.Path, len(got), len(want))
		}
		for p, w := range want {
			if g := got[p]; g != w {
				t.Errorf("%s/%s: target has %+v, want %+v", info.Path, p, g, w)
			}
		}
		res, err := nar.HashPath(dst)
		if err != nil {
			t.Fatal(err)
		}
		if res.Hash != info.NarHash || res.Size != info.NarSize {
			t.Errorf("%s: target NAR %s/%d, want %s/%d", info.Path, res.Hash, res.Size, info.NarHash, info.NarSize)
		}
		rec, ok := records(t, root)[info.Path]
		if !ok {
			t.Errorf("%s: no record", info.Path)
			continue
		}
		if rec.NarHash != info.NarHash || rec.NarSize != info.NarSize || rec.Deriver != info.Deriver ||
			strings.Join(rec.References, " ") != strings.Join(info.References, " ") {
			t.Errorf("%s: record %+v, want %+v", info.Path, rec, info)
		}
	}
}

func records(t *testing.T, root string) map[string]nix.PathInfo {
	t.Helper()
	l, err := newLayout(root)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := l.records()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkNoPartial asserts the store under root holds only complete, recorded
// paths whose content matches their record, and no temporaries unless
// allowTemps (a killed agent leaves its temporaries to the next query).
func checkNoPartial(t *testing.T, root string, allowTemps bool) (complete int) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "nix/store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if !allowTemps {
				t.Errorf("temporary %s left in the store", e.Name())
			}
			continue
		}
		rec, ok := records(t, root)[nix.StoreDir+"/"+e.Name()]
		if !ok {
			t.Errorf("%s in the store has no record", e.Name())
			continue
		}
		res, err := nar.HashPath(filepath.Join(root, "nix/store", e.Name()))
		if err != nil || res.Hash != rec.NarHash {
			t.Errorf("%s: content %s (%v) does not match its record %s", e.Name(), res.Hash, err, rec.NarHash)
		}
		complete++
	}
	return complete
}
