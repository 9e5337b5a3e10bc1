// Package cpio writes and reads "newc" (SVR4, no CRC) cpio archives, the
// format the Linux kernel unpacks as an initramfs.
//
// The writer records exactly what it is given: callers choose owners, modes
// and mtimes, so the same input always gives the same bytes.
package cpio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// File type bits of Header.Mode, as in stat(2).
const (
	TypeMask    = 0o170000
	TypeDir     = 0o040000
	TypeReg     = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
	TypeBlock   = 0o060000
	TypeFIFO    = 0o010000
)

const (
	magic   = "070701"
	trailer = "TRAILER!!!"
)

// Header describes one archive entry.
type Header struct {
	Name     string // path inside the archive, without a leading "/"
	Mode     uint32 // type bits | permission bits
	UID, GID uint32
	MTime    int64 // seconds since the epoch
	Size     int64 // length of the data; for symlinks len(Linkname)
	Linkname string
	// RDevMajor and RDevMinor are the device numbers of char/block devices.
	RDevMajor, RDevMinor uint32
}

// Writer writes a newc archive. Close writes the trailer.
type Writer struct {
	w       io.Writer
	ino     uint32
	pending int64 // data bytes still owed for the current entry
	pad     int64 // padding after the current entry's data
	closed  bool
	err     error
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, ino: 1} }

func pad4(n int64) int64 { return (4 - n%4) % 4 }

// WriteHeader starts a new entry. For regular files, Size bytes must follow
// through Write; for symlinks the target is taken from Linkname.
func (w *Writer) WriteHeader(h *Header) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("cpio: write after close")
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	name := strings.TrimPrefix(h.Name, "/")
	if name == "" || name == trailer || strings.ContainsRune(name, 0) {
		return fmt.Errorf("cpio: invalid entry name %q", h.Name)
	}
	size := h.Size
	var data []byte
	switch h.Mode & TypeMask {
	case TypeReg:
	case TypeSymlink:
		if h.Linkname == "" {
			return fmt.Errorf("cpio: symlink %q has no target", name)
		}
		data = []byte(h.Linkname)
		size = int64(len(data))
	case TypeDir, TypeChar, TypeBlock, TypeFIFO:
		size = 0
	default:
		return fmt.Errorf("cpio: entry %q: unsupported mode %o", name, h.Mode)
	}
	if size < 0 || size > 0xffffffff {
		return fmt.Errorf("cpio: entry %q: size %d out of range", name, size)
	}
	if err := w.writeRaw(h.Mode, h.UID, h.GID, h.MTime, size, h.RDevMajor, h.RDevMinor, name); err != nil {
		return err
	}
	w.pending = size
	w.pad = pad4(size)
	if data != nil {
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	return nil
}

func (w *Writer) writeRaw(mode, uid, gid uint32, mtime, size int64, rmaj, rmin uint32, name string) error {
	nlink := uint32(1)
	if mode&TypeMask == TypeDir {
		nlink = 2
	}
	ino := w.ino
	w.ino++
	if name == trailer {
		ino, nlink = 0, 1
	}
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		magic, ino, mode, uid, gid, nlink, uint32(mtime), uint32(size), 0, 0, rmaj, rmin, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(int64(len(buf))))...)
	if _, err := w.w.Write(buf); err != nil {
		w.err = fmt.Errorf("cpio: write: %w", err)
		return w.err
	}
	return nil
}

// Write writes data of the current entry.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.pending {
		return 0, fmt.Errorf("cpio: write of %d bytes exceeds the %d bytes announced in the header", len(p), w.pending)
	}
	n, err := w.w.Write(p)
	w.pending -= int64(n)
	if err != nil {
		w.err = fmt.Errorf("cpio: write: %w", err)
	}
	return n, w.err
}

func (w *Writer) finishEntry() error {
	if w.pending != 0 {
		w.err = fmt.Errorf("cpio: entry is %d bytes short of its header size", w.pending)
		return w.err
	}
	if w.pad > 0 {
		if _, err := w.w.Write(make([]byte, w.pad)); err != nil {
			w.err = fmt.Errorf("cpio: write: %w", err)
			return w.err
		}
		w.pad = 0
	}
	return nil
}

// Close finishes the last entry and writes the trailer. It does not close
// the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	w.closed = true
	if err := w.writeRaw(0, 0, 0, 0, 0, 0, 0, trailer); err != nil {
		return err
	}
	return nil
}

// Reader reads a newc archive (possibly several concatenated ones, with zero
// padding between them, as the kernel accepts).
type Reader struct {
	r      *bufio.Reader
	off    int64
	remain int64
	pad    int64
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReader(r)} }

func (r *Reader) skip(n int64) error {
	m, err := io.CopyN(io.Discard, r.r, n)
	r.off += m
	return err
}

// Next advances to the next entry, skipping trailers between concatenated
// archives. It returns io.EOF at the end of input.
func (r *Reader) Next() (*Header, error) {
	if err := r.skip(r.remain + r.pad); err != nil {
		return nil, fmt.Errorf("cpio: skip data: %w", err)
	}
	r.remain, r.pad = 0, 0
	for {
		// Skip zero padding between archives.
		b, err := r.r.Peek(1)
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if b[0] == 0 {
			r.r.Discard(1)
			r.off++
			continue
		}
		break
	}
	raw := make([]byte, 110)
	if _, err := io.ReadFull(r.r, raw); err != nil {
		return nil, fmt.Errorf("cpio: header at offset %d: %w", r.off, err)
	}
	r.off += 110
	if string(raw[:6]) != magic {
		return nil, fmt.Errorf("cpio: header at offset %d: bad magic %q", r.off-110, raw[:6])
	}
	field := func(i int) (uint32, error) {
		v, err := strconv.ParseUint(string(raw[6+8*i:6+8*i+8]), 16, 32)
		return uint32(v), err
	}
	var f [13]uint32
	for i := range f {
		v, err := field(i)
		if err != nil {
			return nil, fmt.Errorf("cpio: header at offset %d: field %d: %w", r.off-110, i, err)
		}
		f[i] = v
	}
	namesize := int64(f[11])
	name := make([]byte, namesize)
	if _, err := io.ReadFull(r.r, name); err != nil {
		return nil, fmt.Errorf("cpio: name: %w", err)
	}
	r.off += namesize
	if err := r.skip(pad4(110 + namesize)); err != nil {
		return nil, fmt.Errorf("cpio: name padding: %w", err)
	}
	h := &Header{
		Name: strings.TrimRight(string(name), "\x00"), Mode: f[1], UID: f[2], GID: f[3],
		MTime: int64(f[5]), Size: int64(f[6]), RDevMajor: f[9], RDevMinor: f[10],
	}
	r.remain, r.pad = h.Size, pad4(h.Size)
	if h.Name == trailer {
		if err := r.skip(r.remain + r.pad); err != nil {
			return nil, err
		}
		r.remain, r.pad = 0, 0
		return r.Next()
	}
	if h.Mode&TypeMask == TypeSymlink {
		target := make([]byte, h.Size)
		if _, err := io.ReadFull(r, target); err != nil {
			return nil, fmt.Errorf("cpio: symlink %q: %w", h.Name, err)
		}
		h.Linkname = string(target)
	}
	return h, nil
}

// Read reads data of the current entry.
func (r *Reader) Read(p []byte) (int, error) {
	if r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.r.Read(p)
	r.remain -= int64(n)
	r.off += int64(n)
	if err == io.EOF && r.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
