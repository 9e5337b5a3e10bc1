package install

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Levels a channel's compression moves between, fastest first, with what
// they measured on a closure of shared libraries and data (one core of the
// benchmark machine): fastest 300 MB/s at 0.50 of the NAR size, default
// 225 MB/s at 0.47, better 85 MB/s at 0.45. "best" (14 MB/s) is too slow
// for even a 100 Mbit/s link and is never used.
func compressionLevel(i int) zstd.EncoderLevel {
	return [...]zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression}[i]
}

const strongestLevel = 2

// levelName names a level index as SendStats.Compression does.
func levelName(i int) string { return [...]string{"fastest", "default", "better"}[i] }

// When a channel spends at least levelUpBlocked of its time waiting for the
// link to take its bytes, it compresses harder (fewer bytes on a slow link
// cost less time than the CPU they take); below levelDownBlocked it goes
// back. The thresholds are far apart on purpose: when sender and receiver
// share a machine (a benchmark, a VM on the same host) a slow receiver looks
// like a slow link, and harder compression would take CPU from it, so only a
// channel that waits almost all the time steps up.
const (
	levelUpBlocked   = 0.8
	levelDownBlocked = 0.4
	// levelWindow is the least time (and levelWindowBytes the least
	// output) a decision looks at.
	levelWindow      = 500 * time.Millisecond
	levelWindowBytes = 1 << 20
)

// compressor is one channel's zstd stream. It starts at the fastest level
// and may change level between paths: each change ends the zstd frame and
// starts another, which a reader sees as one stream.
type compressor struct {
	out         *timedWriter
	enc         *zstd.Encoder
	concurrency int
	level       int
	strongest   int

	markTime    time.Time
	markBlocked time.Duration
	markBytes   uint64
}

func newCompressor(w io.Writer, concurrency int) (*compressor, error) {
	c := &compressor{out: &timedWriter{w: w}, concurrency: concurrency, markTime: time.Now()}
	if err := c.newEncoder(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *compressor) newEncoder() error {
	enc, err := zstd.NewWriter(c.out, zstd.WithEncoderLevel(compressionLevel(c.level)), zstd.WithEncoderConcurrency(c.concurrency),
		// Integrity comes from SSH and the per-path sha256; a frame CRC would only cost time.
		zstd.WithEncoderCRC(false))
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	c.enc = enc
	return nil
}

func (c *compressor) Write(p []byte) (int, error) { return c.enc.Write(p) }

// Close ends the stream.
func (c *compressor) Close() error { return c.enc.Close() }

// wire is the compressed bytes written so far.
func (c *compressor) wire() uint64 { return c.out.n.Load() }

// adapt is called between paths, after flush has handed everything
// buffered to the compressor. It changes the level when the last window
// says the link (or the CPU) is the bottleneck.
func (c *compressor) adapt(flush func() error) error {
	now := time.Now()
	elapsed := now.Sub(c.markTime)
	bytes := c.out.n.Load() - c.markBytes
	if elapsed < levelWindow || bytes < levelWindowBytes {
		return nil
	}
	blocked := c.out.blocked() - c.markBlocked
	c.markTime, c.markBlocked, c.markBytes = now, c.out.blocked(), c.out.n.Load()
	next := nextLevel(c.level, float64(blocked)/float64(elapsed))
	if next == c.level {
		return nil
	}
	if err := flush(); err != nil {
		return err
	}
	if err := c.enc.Close(); err != nil {
		return err
	}
	c.level = next
	c.strongest = max(c.strongest, next)
	return c.newEncoder()
}

// nextLevel is the level after one with the given fraction of time spent
// waiting for the link.
func nextLevel(level int, blocked float64) int {
	switch {
	case blocked >= levelUpBlocked && level < strongestLevel:
		return level + 1
	case blocked < levelDownBlocked && level > 0:
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
