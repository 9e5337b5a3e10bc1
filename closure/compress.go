package closure

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Levels a channel's compression moves between, from none up, with what
// they measured on a closure of shared libraries and data (one core of the
// benchmark machine): stored (zstd raw blocks: no compression, only a copy),
// fastest 300 MB/s at 0.50 of the NAR size, default 225 MB/s at 0.47, better
// 85 MB/s at 0.45. "best" (14 MB/s) is too slow for even a 100 Mbit/s link
// and is never used.
var levels = [...]struct {
	name string
	zstd zstd.EncoderLevel // 0 for stored
}{
	{"stored", 0},
	{"fastest", zstd.SpeedFastest},
	{"default", zstd.SpeedDefault},
	{"better", zstd.SpeedBetterCompression},
}

const (
	storedLevel    = 0
	startLevel     = storedLevel // see compressor
	strongestLevel = len(levels) - 1
)

// levelNames says which levels a channel used, weakest to strongest, as
// SendStats.Compression does: "fastest", or "stored to default".
func levelNames(weakest, strongest int) string {
	if weakest == strongest {
		return levels[weakest].name
	}
	return levels[weakest].name + " to " + levels[strongest].name
}

// A channel compresses harder when it spends at least levelUpBlocked of its
// time waiting for the link to take its bytes (fewer bytes on a slow link
// cost less time than the CPU they take) and this machine has at least
// levelUpSpare CPUs idle to do it with. When the receiver runs on the same
// machine (a VM, a benchmark over loopback) a slow receiver looks just like
// a slow link, but harder compression would only take CPU from it: the
// idle CPUs tell the two apart. A channel compresses less when it waits less
// than levelDownBlocked of its time: its own CPU is the bottleneck, and on a
// link faster than compressing, "stored" sends the NAR bytes as they are.
const (
	levelUpBlocked   = 0.8
	levelDownBlocked = 0.4
	levelUpSpare     = 0.5
	// levelWindow is the least time (and levelWindowBytes the least
	// output) a decision looks at.
	levelWindow      = 500 * time.Millisecond
	levelWindowBytes = 1 << 20
)

// compressor is one channel's zstd stream. It starts stored (a link is
// usually slower than compressing, and the first window tells: stepping up
// costs one window of uncompressed bytes) and changes level while it
// writes: each change ends the zstd frame and starts another, which a reader
// sees as one stream.
type compressor struct {
	out         *timedWriter
	enc         io.WriteCloser
	concurrency int
	level       int
	weakest     int
	strongest   int

	markTime    time.Time
	markBlocked time.Duration
	markBytes   uint64
	markCPU     cpuTimes
	readCPU     cpuReader
}

// cpuReader reads the machine's CPU times so far.
type cpuReader func() (cpuTimes, error)

// newCompressor starts a channel's stream; readCPU nil reads /proc/stat.
func newCompressor(w io.Writer, concurrency int, readCPU cpuReader) (*compressor, error) {
	if readCPU == nil {
		readCPU = readCPUTimes
	}
	c := &compressor{out: &timedWriter{w: w}, concurrency: concurrency, markTime: time.Now(),
		level: startLevel, weakest: startLevel, strongest: startLevel, readCPU: readCPU}
	c.markCPU, _ = c.readCPU()
	if err := c.newEncoder(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *compressor) newEncoder() error {
	if c.level == storedLevel {
		c.enc = newStoredWriter(c.out)
		return nil
	}
	enc, err := zstd.NewWriter(c.out, zstd.WithEncoderLevel(levels[c.level].zstd), zstd.WithEncoderConcurrency(c.concurrency),
		// Integrity comes from SSH and the per-path sha256; a frame CRC would only cost time.
		zstd.WithEncoderCRC(false))
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	c.enc = enc
	return nil
}

// adaptChunk is how much of a write goes to the encoder between two looks
// at the level, so that one big path does not hold on to a level too long.
const adaptChunk = 1 << 20

// Write compresses p, changing the level between chunks of it when the last
// window says so.
func (c *compressor) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := c.adapt(); err != nil {
			return n, err
		}
		m, err := c.enc.Write(p[:min(len(p), adaptChunk)])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// Flush sends what the current frame holds so far, ending its block.
func (c *compressor) Flush() error {
	if f, ok := c.enc.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// Close ends the stream.
func (c *compressor) Close() error { return c.enc.Close() }

// wire is the compressed bytes written so far.
func (c *compressor) wire() uint64 { return c.out.n.Load() }

// adapt changes the level when the last window says the link or the CPU is
// the bottleneck: it ends the current frame, with everything written so far,
// and starts one at the new level.
func (c *compressor) adapt() error {
	now := time.Now()
	elapsed := now.Sub(c.markTime)
	bytes := c.out.n.Load() - c.markBytes
	if elapsed < levelWindow || bytes < levelWindowBytes {
		return nil
	}
	blocked := c.out.blocked() - c.markBlocked
	c.markTime, c.markBlocked, c.markBytes = now, c.out.blocked(), c.out.n.Load()
	cpu, err := c.readCPU()
	spare := -1.0
	if err == nil {
		spare = cpu.spareSince(c.markCPU)
	}
	c.markCPU = cpu
	next := nextLevel(c.level, float64(blocked)/float64(elapsed), spare)
	if next == c.level {
		return nil
	}
	if err := c.enc.Close(); err != nil {
		return err
	}
	c.level = next
	c.weakest, c.strongest = min(c.weakest, next), max(c.strongest, next)
	return c.newEncoder()
}

// nextLevel is the level after one with the given fraction of time spent
// waiting for the link and the CPUs this machine had idle (-1: unknown, as
// where there is no /proc/stat).
func nextLevel(level int, blocked, spare float64) int {
	known := spare >= 0
	switch {
	case level < strongestLevel && blocked >= levelUpBlocked && (!known || spare >= levelUpSpare):
		return level + 1
	case level > storedLevel && blocked < levelDownBlocked:
		return level - 1
	}
	return level
}

// timedWriter counts the bytes written through it and the time its writes
// waited (for the SSH channel's window, the socket: the link).
type timedWriter struct {
	w         io.Writer
	n         atomic.Uint64
	blockedNS atomic.Int64
}

func (t *timedWriter) Write(p []byte) (int, error) {
	start := time.Now()
	n, err := t.w.Write(p)
	t.blockedNS.Add(int64(time.Since(start)))
	t.n.Add(uint64(n))
	return n, err
}

func (t *timedWriter) blocked() time.Duration { return time.Duration(t.blockedNS.Load()) }
