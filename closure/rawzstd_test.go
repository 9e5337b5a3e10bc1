package closure

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestStoredWriter: what storedWriter writes is a zstd frame that the
// receiver's decoder (and the reference zstd, where installed) turns back
// into the same bytes, alone or between compressed frames, and it is no
// bigger than the input plus its headers.
func TestStoredWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	tests := []struct {
		name   string
		data   []byte
		writes []int // sizes of the writes, repeated
	}{
		{"empty", nil, nil},
		{"one byte", []byte{42}, []int{1}},
		{"one whole block", random(storedBlock), []int{storedBlock}},
		{"a block and a byte", random(storedBlock + 1), []int{storedBlock + 1}},
		{"odd writes", random(1<<20 + 12345), []int{1, 7, 65536, 200000, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			w := newStoredWriter(&out)
			rest, blocks := tc.data, 1 // the last one
			for i := 0; len(rest) > 0; i++ {
				n := min(tc.writes[i%len(tc.writes)], len(rest))
				if got, err := w.Write(rest[:n]); got != n || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", n, got, err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			blocks += len(tc.data) / storedBlock
			if max := len(tc.data) + 6 + 3*blocks; out.Len() > max {
				t.Errorf("frame is %d bytes for %d of data, want at most %d", out.Len(), len(tc.data), max)
			}
			if got := decodeZstd(t, out.Bytes()); !bytes.Equal(got, tc.data) {
				t.Errorf("decoded %d bytes, want the %d written", len(got), len(tc.data))
			}
			if _, err := exec.LookPath("zstd"); err == nil {
				cmd := exec.Command("zstd", "-q", "-d", "-c")
				cmd.Stdin = bytes.NewReader(out.Bytes())
				got, err := cmd.Output()
				if err != nil {
					t.Fatalf("zstd -d: %v", err)
				}
				if !bytes.Equal(got, tc.data) {
					t.Errorf("zstd -d gave %d bytes, want the %d written", len(got), len(tc.data))
				}
			}
		})
	}

	// A stream that switches between stored and compressed frames, as a
	// channel does when its level changes, reads as one.
	var out, want bytes.Buffer
	for i, stored := range []bool{true, false, true, true, false} {
		data := bytes.Repeat(random(1000+i), 100+i)
		want.Write(data)
		var w io.WriteCloser
		if stored {
			w = newStoredWriter(&out)
		} else {
			enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest))
			if err != nil {
				t.Fatal(err)
			}
			w = enc
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := decodeZstd(t, out.Bytes()); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("mixed frames decoded to %d bytes, want the %d written", len(got), want.Len())
	}
}

// decodeZstd decodes as Receive does.
func decodeZstd(t *testing.T, b []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := io.ReadAll(dec)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return got
}

// A flushed compressor's output decodes to everything written so far,
// before the stream ends, at every level.
func TestCompressorFlush(t *testing.T) {
	for _, level := range []int{storedLevel, strongestLevel} {
		var out bytes.Buffer
		c, err := newCompressor(&out, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if level != c.level {
			c.enc.Close()
			c.level = level
			if err := c.newEncoder(); err != nil {
				t.Fatal(err)
			}
			out.Reset()
		}
		want := bytes.Repeat([]byte("a small path "), 100)
		if _, err := c.enc.Write(want); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		dec, err := zstd.NewReader(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(dec, got); err != nil || !bytes.Equal(got, want) {
			t.Errorf("level %d: after Flush the reader got %q, %v; want the %d bytes written", level, got, err, len(want))
		}
		dec.Close()
	}
}
