package closure

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// TestMemoryBench measures the peak RSS of closure.Send (this process) and
// of the real agent's `receive` (a separate process over a pipe) for the
// workloads of issue 19 item 5. It builds its inputs with real Nix under
// /var/tmp and runs only with NIXOS_VIA_MEMBENCH=1 (CI skips it);
// NIXOS_VIA_MEMBENCH_FILES and NIXOS_VIA_MEMBENCH_MIB size the workloads.
func TestMemoryBench(t *testing.T) {
	if os.Getenv("NIXOS_VIA_MEMBENCH") != "1" {
		t.Skip("set NIXOS_VIA_MEMBENCH=1 to measure peak RSS (see BENCHMARKS.md)")
	}
	files := envInt(t, "NIXOS_VIA_MEMBENCH_FILES", 100000)
	mib := envInt(t, "NIXOS_VIA_MEMBENCH_MIB", 4096)
	cases := []struct {
		name string
		make func(dir string) error
	}{
		{fmt.Sprintf("%d-small-files", files), func(dir string) error { return smallFiles(dir, files) }},
		{fmt.Sprintf("%dMiB-random", mib), func(dir string) error { return bigFile(dir, mib, true) }},
		{fmt.Sprintf("%dMiB-sparse", mib), func(dir string) error { return bigFile(dir, mib, false) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			work, err := os.MkdirTemp("/var/tmp", "membench-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(work)
			src := filepath.Join(work, "src-"+strings.ReplaceAll(tc.name, "/", "-"))
			if err := tc.make(src); err != nil {
				t.Fatal(err)
			}
			infos := addToStore(t, src)
			os.RemoveAll(src)
			root := filepath.Join(work, "root")
			before := selfMaxRSS()
			runner := &rssRunner{}
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
			defer cancel()
			start := time.Now()
			stats, err := Send(ctx, runner, infos, SendOptions{Agent: agentBin, Root: root, Jobs: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("MEMBENCH %s: paths=%d nar=%dMiB took=%s sender_maxrss=%dMiB (before send %dMiB) agent_maxrss=%dMiB",
				tc.name, stats.Sent, stats.NarBytes>>20, time.Since(start).Round(time.Second),
				selfMaxRSS()>>10, before>>10, runner.maxRSS>>10)
		})
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// selfMaxRSS is this process's peak RSS in KiB.
func selfMaxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

// rssRunner is localRunner that keeps the largest peak RSS (KiB) of the
// agent processes it ran; wait4's rusage covers sh and the agent it waited for.
type rssRunner struct {
	localRunner
	maxRSS int64
}

func (r *rssRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	c.WaitDelay = 5 * time.Second
	err := c.Run()
	if c.ProcessState != nil {
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > r.maxRSS {
			r.maxRSS = ru.Maxrss
		}
	}
	if err != nil {
		return fmt.Errorf("sh -c %q: %w", cmd, err)
	}
	return nil
}

// smallFiles writes n files of 1..4096 bytes in directories of 1000.
func smallFiles(dir string, n int) error {
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
		}
		if _, err := rand.Read(buf); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%06d", i)), buf[:1+i%4096], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// bigFile writes one file of mib MiB: pseudo-random, or a hole (sparse).
func bigFile(dir string, mib int, random bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		return err
	}
	defer f.Close()
	if !random {
		return f.Truncate(int64(mib) << 20)
	}
	buf := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		rand.Read(buf)
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return f.Close()
}

// addToStore adds dir with `nix-store --add` and returns its path info.
func addToStore(t *testing.T, dir string) []nix.PathInfo {
	t.Helper()
	out, err := exec.Command("nix-store", "--option", "substituters", "", "--add", dir).Output()
	if err != nil {
		t.Fatalf("nix-store --add %s: %v", dir, err)
	}
	p := strings.TrimSpace(string(out))
	infos, err := nix.CLI{Args: []string{"--option", "substituters", ""}}.PathInfo(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return infos
}
