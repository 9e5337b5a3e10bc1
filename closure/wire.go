package closure

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

const (
	streamMagic   = "nixos-via-closure"
	streamVersion = 1

	itemPath    = 1
	itemTrailer = 2

	maxStringLen  = 4096
	maxReferences = 1 << 20
	// MaxNarSize bounds one path's NAR (1 TiB), so a corrupt header cannot
	// make the receiver wait for petabytes.
	MaxNarSize = 1 << 40
)

// ErrStream is wrapped by every error about a malformed stream.
var ErrStream = errors.New("malformed closure stream")

type frameWriter struct {
	w   *bufio.Writer
	buf [8]byte
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 256<<10)}
}

func (f *frameWriter) uint(n uint64) {
	binary.LittleEndian.PutUint64(f.buf[:], n)
	f.w.Write(f.buf[:])
}

func (f *frameWriter) str(s string) {
	f.uint(uint64(len(s)))
	f.w.WriteString(s)
}

func (f *frameWriter) magic() {
	f.str(streamMagic)
	f.uint(streamVersion)
}

// pathHeader writes a path item's header; the caller writes the NAR next.
func (f *frameWriter) pathHeader(info nix.PathInfo) {
	f.uint(itemPath)
	f.str(info.Path)
	f.uint(info.NarSize)
	f.str(info.NarHash.String())
	f.uint(uint64(len(info.References)))
	for _, r := range info.References {
		f.str(r)
	}
	f.str(info.Deriver)
}

func (f *frameWriter) trailer(paths int, narBytes uint64) {
	f.uint(itemTrailer)
	f.uint(uint64(paths))
	f.uint(narBytes)
}

// Write passes NAR bytes through.
func (f *frameWriter) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f *frameWriter) flush() error { return f.w.Flush() }

type frameReader struct {
	r   *bufio.Reader
	buf [8]byte
}

func streamErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrStream, fmt.Sprintf(format, args...))
}

func (f *frameReader) readFull(p []byte, what string) error {
	if _, err := io.ReadFull(f.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: ends inside %s: %w", ErrStream, what, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("read closure stream: %s: %w", what, err)
	}
	return nil
}

func (f *frameReader) uint(what string) (uint64, error) {
	if err := f.readFull(f.buf[:], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(f.buf[:]), nil
}

func (f *frameReader) str(what string) (string, error) {
	n, err := f.uint(what)
	if err != nil {
		return "", err
	}
	if n > maxStringLen {
		return "", streamErr("%s is %d bytes, limit %d", what, n, maxStringLen)
	}
	b := make([]byte, n)
	if err := f.readFull(b, what); err != nil {
		return "", err
	}
	return string(b), nil
}

func (f *frameReader) magic() error {
	m, err := f.str("magic")
	if err != nil {
		return err
	}
	if m != streamMagic {
		return streamErr("magic %q, want %q (is the sender a nixos-via?)", m, streamMagic)
	}
	v, err := f.uint("version")
	if err != nil {
		return err
	}
	if v != streamVersion {
		return streamErr("version %d, this agent speaks %d; use the agent of the same nixos-via release", v, streamVersion)
	}
	return nil
}

// item reads the next item's kind.
func (f *frameReader) item() (uint64, error) {
	k, err := f.uint("item kind")
	if err != nil {
		return 0, err
	}
	if k != itemPath && k != itemTrailer {
		return 0, streamErr("unknown item kind %d", k)
	}
	return k, nil
}

// pathHeader reads and validates a path header (after its kind).
func (f *frameReader) pathHeader() (nix.PathInfo, error) {
	var info nix.PathInfo
	var err error
	if info.Path, err = f.str("store path"); err != nil {
		return info, err
	}
	if err := nix.CheckStorePath(info.Path); err != nil {
		return info, fmt.Errorf("%w: %w", ErrStream, err)
	}
	if info.NarSize, err = f.uint("narSize"); err != nil {
		return info, err
	}
	if info.NarSize == 0 || info.NarSize > MaxNarSize {
		return info, streamErr("%s: narSize %d out of range", info.Path, info.NarSize)
	}
	h, err := f.str("narHash")
	if err != nil {
		return info, err
	}
	if info.NarHash, err = nar.ParseHash(h); err != nil {
		return info, fmt.Errorf("%w: %s: %w", ErrStream, info.Path, err)
	}
	n, err := f.uint("reference count")
	if err != nil {
		return info, err
	}
	if n > maxReferences {
		return info, streamErr("%s: %d references, limit %d", info.Path, n, maxReferences)
	}
	info.References = make([]string, 0, n)
	for i := uint64(0); i < n; i++ {
		r, err := f.str("reference")
		if err != nil {
			return info, err
		}
		info.References = append(info.References, r)
	}
	if info.Deriver, err = f.str("deriver"); err != nil {
		return info, err
	}
	if err := info.Validate(); err != nil {
		return info, fmt.Errorf("%w: %w", ErrStream, err)
	}
	return info, nil
}

// parseOK parses the receiver's answer line "ok <paths> <narBytes>".
func parseOK(line string) (paths int, narBytes uint64, err error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ok" {
		return 0, 0, fmt.Errorf("agent answered %q, want \"ok <paths> <bytes>\"", strings.TrimSpace(line))
	}
	paths, err1 := strconv.Atoi(f[1])
	narBytes, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("agent answered %q, want \"ok <paths> <bytes>\"", strings.TrimSpace(line))
	}
	return paths, narBytes, nil
}
