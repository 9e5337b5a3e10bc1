// Package nar reads and writes Nix ARchives (NAR), the canonical serialisation
// of a store path that Nix hashes into a narHash, and restores them to disk.
//
// A NAR is a sequence of strings, each a little-endian uint64 length, the
// bytes, and zero padding to a multiple of 8:
//
//	"nix-archive-1" node
//	node  = "(" "type" ( "regular" ["executable" ""] "contents" <bytes>
//	                   | "symlink" "target" <target>
//	                   | "directory" { "entry" "(" "name" <name> "node" node ")" } ) ")"
//
// Directory entries appear sorted by name in byte order. The decoder here
// accepts exactly the canonical form Nix writes, so a NAR it accepts hashes
// the same as the tree it restores.
package nar

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

const (
	magic = "nix-archive-1"

	// MaxNameLen bounds a directory entry name (Linux NAME_MAX).
	MaxNameLen = 255
	// MaxTargetLen bounds a symlink target (Linux PATH_MAX - 1).
	MaxTargetLen = 4095
	// MaxDepth bounds directory nesting, so a hostile NAR cannot exhaust memory.
	MaxDepth = 1024

	maxTokenLen = 16
)

// Result is what an encode or decode saw: the sha256 and the byte count of
// the NAR serialisation.
type Result struct {
	Hash Hash
	Size uint64
}

// ErrFormat is wrapped by every error about malformed NAR input.
var ErrFormat = errors.New("malformed NAR")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

var zeroPad [8]byte

func padLen(n uint64) int { return int((8 - n%8) % 8) }

// hashCount is the SHA-256 and byte count of the bytes given to add.
type hashCount struct {
	h hash.Hash
	n uint64
}

func newHashCount() hashCount { return hashCount{h: sha256.New()} }

func (c *hashCount) add(p []byte) {
	c.h.Write(p)
	c.n += uint64(len(p))
}

func (c *hashCount) result() Result {
	var r Result
	c.h.Sum(r.Hash[:0])
	r.Size = c.n
	return r
}

// hashWriter counts and hashes what passes to w.
type hashWriter struct {
	w io.Writer
	hashCount
}

func newHashWriter(w io.Writer) *hashWriter { return &hashWriter{w: w, hashCount: newHashCount()} }

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.add(p[:n])
	return n, err
}

// hashOnly hashes and counts p, which the caller put in place itself.
func (hw *hashWriter) hashOnly(p []byte) { hw.add(p) }

// hashReader counts and hashes what is read through it.
type hashReader struct {
	r io.Reader
	hashCount
}

func newHashReader(r io.Reader) *hashReader { return &hashReader{r: r, hashCount: newHashCount()} }

func (hr *hashReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.add(p[:n])
	return n, err
}

// encoder writes NAR strings.
type encoder struct {
	w       io.Writer
	buf     [8]byte
	copyBuf []byte
	// mem, when the NAR goes into memory, is where file contents are read
	// to directly; hw then only hashes them (hashOnly).
	mem *bytes.Buffer
	hw  *hashWriter
}

func (e *encoder) uint(n uint64) error {
	binary.LittleEndian.PutUint64(e.buf[:], n)
	_, err := e.w.Write(e.buf[:])
	return err
}

func (e *encoder) str(s string) error {
	if err := e.uint(uint64(len(s))); err != nil {
		return err
	}
	if _, err := io.WriteString(e.w, s); err != nil {
		return err
	}
	return e.pad(uint64(len(s)))
}

func (e *encoder) strs(ss ...string) error {
	for _, s := range ss {
		if err := e.str(s); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) pad(n uint64) error {
	if p := padLen(n); p > 0 {
		_, err := e.w.Write(zeroPad[:p])
		return err
	}
	return nil
}
