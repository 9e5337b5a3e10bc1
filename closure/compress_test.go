package closure

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

func TestNextLevel(t *testing.T) {
	const unknown = -1
	tests := []struct {
		level   int
		blocked float64
		spare   float64 // CPUs idle on this machine
		want    int
	}{
		{1, 0.95, 1.5, 2},                     // waiting on the link, CPU to spare: compress harder
		{2, 0.85, unknown, 3},                 // no /proc/stat: the link alone decides
		{3, 0.99, 1.5, strongestLevel},        // never beyond the strongest
		{1, 0.6, 1.5, 1},                      // in between: stay
		{3, 0.2, 1.5, 2},                      // the CPU is the bottleneck: back down
		{1, 0.2, 1.5, storedLevel},            // ... down to sending the bytes as they are
		{storedLevel, 0.0, 1.5, storedLevel},  // never below stored
		{storedLevel, 0.95, 0.3, storedLevel}, // waiting, but this machine is busy (the receiver on it?): not harder
		{1, 0.95, 0.1, 1},                     // ... and not less either: the link may be slow
		{storedLevel, 0.95, unknown, 1},       // waiting, CPU unknown: compress
		{storedLevel, 0.95, levelUpSpare, 1},  // the thresholds are inclusive
	}
	for _, tc := range tests {
		if got := nextLevel(tc.level, tc.blocked, tc.spare); got != tc.want {
			t.Errorf("nextLevel(%d, blocked %.2f, spare %.2f) = %d, want %d", tc.level, tc.blocked, tc.spare, got, tc.want)
		}
	}
}

// storePaths writes n store paths of compressible text (words drawn at
// random, as in logs, docs and scripts) under localRoot and returns them.
func storePaths(t *testing.T, localRoot string, n, size int) []nix.PathInfo {
	t.Helper()
	words := strings.Fields("the quick brown fox jumps over a lazy dog while nix builds every derivation from its inputs " +
		"and copies closures between stores with hashes references signatures deriver outputs")
	rng := rand.New(rand.NewPCG(1, 2))
	var infos []nix.PathInfo
	for i := range n {
		p := fakePath(fmt.Sprintf("text-%d", i))
		dir := filepath.Join(localRoot, p)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for b.Len() < size {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(" \n"[rng.IntN(8)/7])
		}
		if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := nar.HashPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, nix.PathInfo{Path: p, NarHash: res.Hash, NarSize: res.Size})
	}
	return infos
}

// slowLinkRunner gives each agent's stdin at most rate bytes a second, as a
// slow network would.
type slowLinkRunner struct {
	localRunner
	rate float64
}

func (s *slowLinkRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if stdin != nil && strings.Contains(cmd, " receive ") {
		stdin = &slowReader{r: stdin, rate: s.rate, start: time.Now()}
	}
	return s.localRunner.Run(ctx, cmd, stdin, stdout, stderr)
}

type slowReader struct {
	r     io.Reader
	rate  float64
	start time.Time
	n     int64
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(p) > 16<<10 {
		p = p[:16<<10]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	time.Sleep(time.Until(s.start.Add(time.Duration(float64(s.n) / s.rate * float64(time.Second)))))
	return n, err
}

// TestCompressionFollowsTheLink: over a slow link a channel compresses
// harder and sends fewer bytes than over a fast one, and what arrives is
// the same.
func TestCompressionFollowsTheLink(t *testing.T) {
	localRoot := t.TempDir()
	infos := storePaths(t, localRoot, 48, 512<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	send := func(r Runner, cpu cpuReader) (SendStats, string) {
		root := t.TempDir()
		stats, err := Send(ctx, r, infos, SendOptions{Agent: agentBin, Root: root, Jobs: 1, LocalRoot: localRoot, readCPU: cpu})
		if err != nil {
			t.Fatal(err)
		}
		return stats, root
	}
	// This machine's own load must not decide the test: the slow link is
	// sent once with every CPU idle and once with none.
	fast, fastRoot := send(&localRunner{}, nil)
	slow, slowRoot := send(&slowLinkRunner{rate: 3 << 19}, machineIdle(2, 1))
	if !strings.HasSuffix(slow.Compression, levels[strongestLevel].name) {
		t.Errorf("over a 1.5 MiB/s link, CPUs idle: compression %q, want up to %q", slow.Compression, levels[strongestLevel].name)
	}
	busy, busyRoot := send(&slowLinkRunner{rate: 3 << 19}, machineIdle(2, 0))
	if got, want := busy.Compression, levels[storedLevel].name; got != want {
		t.Errorf("over a 1.5 MiB/s link, no CPU idle (a receiver on this machine): compression %q, want %q", got, want)
	}
	// A local pipe is normally faster than the agent can take it in, but on
	// a busy machine the agent may lag and the channel step up too.
	if !strings.HasSuffix(fast.Compression, levels[strongestLevel].name) && slow.WireBytes >= fast.WireBytes {
		t.Errorf("over a 1.5 MiB/s link: %d bytes on the wire, want fewer than the %d of a local pipe", slow.WireBytes, fast.WireBytes)
	}
	for _, root := range []string{fastRoot, slowRoot, busyRoot} {
		for _, info := range infos {
			got, err := nar.HashPath(filepath.Join(root, info.Path))
			if err != nil || got.Hash != info.NarHash {
				t.Fatalf("%s under %s: %v, %v; want %s", info.Path, root, got.Hash, err, info.NarHash)
			}
		}
	}
	t.Logf("local pipe: %d bytes (%s); slow link: %d bytes (%s)", fast.WireBytes, fast.Compression, slow.WireBytes, slow.Compression)
}

// machineIdle is a machine of cpus CPUs, the given fraction of them idle
// between any two readings.
func machineIdle(cpus int, idle float64) cpuReader {
	var mu sync.Mutex
	var now cpuTimes
	return func() (cpuTimes, error) {
		mu.Lock()
		defer mu.Unlock()
		now.cpus = cpus
		now.total += 1000
		now.idle += uint64(1000 * idle)
		return now, nil
	}
}
