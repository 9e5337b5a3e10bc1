package closure

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// maxXZDict bounds the LZMA2 dictionary an xz NAR may ask for: xz -9, the
// largest preset, uses 64 MiB. The dictionary is allocated whole when a
// block starts, so without a bound a cache could make the agent allocate
// 4 GiB per download; a larger one fails the substitution and the path is
// streamed.
const maxXZDict = 64 << 20

// xzReader decodes an xz file (one or more streams, with stream padding)
// whose blocks hold one LZMA2 filter each, as Nix and xz(1) write them,
// with a dictionary of at most maxDict bytes. The library's xz.Reader
// takes the dictionary size from each block header without a bound, so
// this reader parses the container itself and hands only the LZMA2 data
// to lzma.Reader2, with the block's own dictionary size once it is known
// to be within the bound. The integrity checks of the blocks (CRC32,
// CRC64, SHA-256) are skipped: the NAR's narHash, which the caller checks,
// is what proves the content.
type xzReader struct {
	r       *countingByteReader
	maxDict int64
	size    int64         // the uncompressed size, if known (else 0): no dictionary need be larger
	check   int           // bytes of each block's check field
	flags   [2]byte       // the stream flags, repeated in the footer
	block   *lzma.Reader2 // the block being read; nil between blocks
	start   int64         // where the block's header began
	header  int64         // the block header's size
	csize   int64         // the compressed size the header gives, or -1
	blocks  int           // blocks of the current stream
	err     error
}

var xzMagic = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}

// errXZDict is a block asking for a dictionary beyond the bound.
var errXZDict = errors.New("xz: dictionary larger than the bound")

// newXZReader reads xz from r. size, when not 0, is what it decodes to (a
// NAR's narSize): a dictionary never needs to hold more than the whole
// output, so a block's is allocated no larger (a 2 MiB NAR of xz -6 gets
// 2 MiB, not 8; a NAR beyond size fails later, at the caller's bound).
func newXZReader(r io.Reader, maxDict, size int64) (*xzReader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	x := &xzReader{r: &countingByteReader{r: br}, maxDict: maxDict, size: size}
	if err := x.streamHeader(); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *xzReader) Read(p []byte) (int, error) {
	for x.err == nil {
		if x.block == nil {
			x.err = x.nextBlock()
			continue
		}
		n, err := x.block.Read(p)
		if err == io.EOF {
			x.block, err = nil, x.endBlock()
		}
		if err != nil {
			x.err = err
		}
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
	return 0, x.err
}

// streamHeader reads the 12 bytes that start a stream.
func (x *xzReader) streamHeader() error {
	var h [12]byte
	if _, err := io.ReadFull(x.r, h[:]); err != nil {
		return fmt.Errorf("xz: stream header: %w", unexpected(err))
	}
	if !bytes.Equal(h[:6], xzMagic) {
		return errors.New("xz: not an xz stream")
	}
	if crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:]) {
		return errors.New("xz: stream header checksum")
	}
	if h[6] != 0 || h[7] > 0x0F {
		return fmt.Errorf("xz: stream flags %#x %#x", h[6], h[7])
	}
	x.flags = [2]byte{h[6], h[7]}
	// Check sizes by type: none, then three types each of 4, 8, 16, 32 and 64 bytes.
	x.check = 0
	if h[7] > 0 {
		x.check = 4 << ((h[7] - 1) / 3)
	}
	x.blocks = 0
	return nil
}

// nextBlock reads a block header and starts its LZMA2 reader; at the index
// it reads the rest of the stream and what follows, returning io.EOF at
// the end of the file.
func (x *xzReader) nextBlock() error {
	x.start = x.r.n
	size, err := x.r.ReadByte()
	if err != nil {
		return fmt.Errorf("xz: block header: %w", unexpected(err))
	}
	if size == 0 {
		return x.endStream()
	}
	h := make([]byte, (int(size)+1)*4)
	h[0] = size
	if _, err := io.ReadFull(x.r, h[1:]); err != nil {
		return fmt.Errorf("xz: block header: %w", unexpected(err))
	}
	body := h[:len(h)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(h[len(h)-4:]) {
		return errors.New("xz: block header checksum")
	}
	flags := body[1]
	if flags&0x3C != 0 || flags&0x03 != 0 {
		return fmt.Errorf("xz: block flags %#x: want one filter (LZMA2) and no reserved bits", flags)
	}
	hr := bytes.NewReader(body[2:])
	x.csize = -1
	if flags&0x40 != 0 {
		v, err := binary.ReadUvarint(hr)
		if err != nil || v == 0 || v > 1<<62 {
			return errors.New("xz: block header compressed size")
		}
		x.csize = int64(v)
	}
	if flags&0x80 != 0 {
		if _, err := binary.ReadUvarint(hr); err != nil {
			return errors.New("xz: block header uncompressed size")
		}
	}
	id, err1 := binary.ReadUvarint(hr)
	props, err2 := binary.ReadUvarint(hr)
	if err1 != nil || err2 != nil || id != 0x21 || props != 1 {
		return fmt.Errorf("xz: block filter %#x with %d bytes of properties: want LZMA2 (0x21) alone", id, props)
	}
	code, err := hr.ReadByte()
	if err != nil {
		return errors.New("xz: block header: LZMA2 properties")
	}
	for hr.Len() > 0 {
		if b, _ := hr.ReadByte(); b != 0 {
			return errors.New("xz: block header padding")
		}
	}
	dict, err := lzma.DecodeDictCap(code)
	if err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	if dict > x.maxDict {
		return fmt.Errorf("%w: a block wants %d MiB, at most %d MiB", errXZDict, dict>>20, x.maxDict>>20)
	}
	x.header = int64(len(h))
	if x.size > 0 && dict > x.size {
		dict = x.size
	}
	x.block, err = lzma.Reader2Config{DictCap: max(int(dict), lzma.MinDictCap)}.NewReader2(x.r)
	if err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	x.blocks++
	return nil
}

// endBlock reads the block's padding and skips its check.
func (x *xzReader) endBlock() error {
	compressed := x.r.n - x.start - x.header
	if x.csize >= 0 && compressed != x.csize {
		return fmt.Errorf("xz: block of %d compressed bytes, its header says %d", compressed, x.csize)
	}
	if err := x.skipPadding(x.r.n - x.start); err != nil {
		return err
	}
	if _, err := io.CopyN(io.Discard, x.r, int64(x.check)); err != nil {
		return fmt.Errorf("xz: block check: %w", unexpected(err))
	}
	return nil
}

// skipPadding reads the zero bytes that bring length to a multiple of four.
func (x *xzReader) skipPadding(length int64) error {
	for ; length%4 != 0; length++ {
		b, err := x.r.ReadByte()
		if err != nil {
			return fmt.Errorf("xz: padding: %w", unexpected(err))
		}
		if b != 0 {
			return errors.New("xz: padding is not zero")
		}
	}
	return nil
}

// endStream reads the index (its indicator already read), the footer, and
// the stream padding after it; then another stream, or io.EOF.
func (x *xzReader) endStream() error {
	start := x.r.n - 1
	records, err := binary.ReadUvarint(x.r)
	if err != nil || records != uint64(x.blocks) {
		return fmt.Errorf("xz: index of %d records for %d blocks", records, x.blocks)
	}
	for i := uint64(0); i < 2*records; i++ {
		if _, err := binary.ReadUvarint(x.r); err != nil {
			return fmt.Errorf("xz: index: %w", unexpected(err))
		}
	}
	if err := x.skipPadding(x.r.n - start); err != nil {
		return err
	}
	var f [16]byte // the index's CRC32, then the footer
	if _, err := io.ReadFull(x.r, f[:]); err != nil {
		return fmt.Errorf("xz: stream footer: %w", unexpected(err))
	}
	if !bytes.Equal(f[14:], []byte("YZ")) || f[12] != x.flags[0] || f[13] != x.flags[1] {
		return errors.New("xz: stream footer")
	}
	// Stream padding (groups of four zero bytes), then the end or another stream.
	for {
		b, err := x.r.r.Peek(4)
		if len(b) == 0 && err == io.EOF {
			return io.EOF
		}
		if len(b) < 4 {
			return errors.New("xz: stream padding")
		}
		if !bytes.Equal(b, []byte{0, 0, 0, 0}) {
			return x.streamHeader()
		}
		x.r.Discard(4)
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// countingByteReader counts the bytes read through it.
type countingByteReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingByteReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingByteReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

func (c *countingByteReader) Discard(n int) {
	d, _ := c.r.Discard(n)
	c.n += int64(d)
}
