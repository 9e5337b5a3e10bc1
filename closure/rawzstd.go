package closure

import (
	"encoding/binary"
	"io"
)

// storedWriter writes a zstd frame of raw (stored) blocks: the zstd format
// without compression, for links faster than compressing. A zstd decoder
// reads it like any other frame, at the cost of a copy.
type storedWriter struct {
	w   io.Writer
	buf []byte // frame header, when not yet written; 3-byte block header; up to storedBlock bytes
	hdr int    // length of the frame header still in buf
	err error
}

// storedBlock is the largest block: the frame's window, 128 KiB, which is
// also the format's largest block.
const storedBlock = 128 << 10

// frameHeader is the magic number, a frame header descriptor of 0 (no
// content size, no checksum, no dictionary, not single-segment) and the
// window descriptor for 2^(10+7) bytes = 128 KiB.
var frameHeader = [...]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3}

// newStoredWriter starts a frame; its header goes out with the first block.
func newStoredWriter(w io.Writer) *storedWriter {
	s := &storedWriter{w: w, hdr: len(frameHeader), buf: make([]byte, len(frameHeader)+3, len(frameHeader)+3+storedBlock)}
	copy(s.buf, frameHeader[:])
	return s
}

func (s *storedWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 && s.err == nil {
		room := s.hdr + 3 + storedBlock - len(s.buf)
		if room > len(p) {
			room = len(p)
		}
		s.buf = append(s.buf, p[:room]...)
		p, n = p[room:], n+room
		if len(s.buf) == s.hdr+3+storedBlock {
			s.block(false)
		}
	}
	return n, s.err
}

// block writes the buffered bytes as one raw block.
func (s *storedWriter) block(last bool) {
	if s.err != nil {
		return
	}
	h := uint32(len(s.buf)-s.hdr-3) << 3 // block type 0: raw
	if last {
		h |= 1
	}
	var hb [4]byte
	binary.LittleEndian.PutUint32(hb[:], h)
	copy(s.buf[s.hdr:s.hdr+3], hb[:3])
	_, s.err = s.w.Write(s.buf)
	// The frame header is out: blocks start at 0 from now on.
	s.buf, s.hdr = s.buf[:3], 0
}

// Flush writes what is buffered as a block of its own, so the reader has
// it without waiting for a full block.
func (s *storedWriter) Flush() error {
	if len(s.buf) > s.hdr+3 {
		s.block(false)
	}
	return s.err
}

// Close ends the frame with a last block (possibly empty).
func (s *storedWriter) Close() error {
	s.block(true)
	return s.err
}
