package nar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// visitor receives the nodes of a NAR in order. Paths are relative to the
// NAR's root ("" is the root itself) and joined with "/".
type visitor interface {
	directory(rel string) error
	directoryEnd(rel string) error
	// regular must read exactly size bytes from contents (or fail).
	regular(rel string, executable bool, size uint64, contents io.Reader) error
	symlink(rel, target string) error
}

type decoder struct {
	r   io.Reader
	buf [8]byte
	v   visitor
}

// decode parses one NAR from r, reading no byte past its end, and feeds v.
func decode(r io.Reader, v visitor) error {
	d := &decoder{r: r, v: v}
	if err := d.expect(magic); err != nil {
		return err
	}
	return d.node("", 0)
}

func (d *decoder) readFull(p []byte, what string) error {
	if _, err := io.ReadFull(d.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated in %s: %w", ErrFormat, what, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("nar: read %s: %w", what, err)
	}
	return nil
}

func (d *decoder) uint(what string) (uint64, error) {
	if err := d.readFull(d.buf[:], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(d.buf[:]), nil
}

func (d *decoder) padding(n uint64, what string) error {
	p := padLen(n)
	if p == 0 {
		return nil
	}
	if err := d.readFull(d.buf[:p], what+" padding"); err != nil {
		return err
	}
	for _, b := range d.buf[:p] {
		if b != 0 {
			return formatErr("non-zero padding after %s", what)
		}
	}
	return nil
}

func (d *decoder) str(max int, what string) (string, error) {
	n, err := d.uint(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(max) {
		return "", formatErr("%s is %d bytes, limit %d", what, n, max)
	}
	b := make([]byte, n)
	if err := d.readFull(b, what); err != nil {
		return "", err
	}
	if err := d.padding(n, what); err != nil {
		return "", err
	}
	return string(b), nil
}

func (d *decoder) token() (string, error) { return d.str(maxTokenLen, "token") }

func (d *decoder) expect(want string) error {
	got, err := d.token()
	if err != nil {
		return err
	}
	if got != want {
		return formatErr("got token %q, want %q", got, want)
	}
	return nil
}

func (d *decoder) node(rel string, depth int) error {
	if depth > MaxDepth {
		return formatErr("directories nested deeper than %d", MaxDepth)
	}
	if err := d.expect("("); err != nil {
		return err
	}
	if err := d.expect("type"); err != nil {
		return err
	}
	typ, err := d.token()
	if err != nil {
		return err
	}
	switch typ {
	case "regular":
		if err := d.regular(rel); err != nil {
			return err
		}
	case "symlink":
		if err := d.expect("target"); err != nil {
			return err
		}
		target, err := d.str(MaxTargetLen, "symlink target")
		if err != nil {
			return err
		}
		if target == "" || strings.IndexByte(target, 0) >= 0 {
			return formatErr("symlink %q: invalid target %q", rel, target)
		}
		if err := d.v.symlink(rel, target); err != nil {
			return err
		}
		if err := d.expect(")"); err != nil {
			return err
		}
	case "directory":
		if err := d.directory(rel, depth); err != nil {
			return err
		}
	default:
		return formatErr("unknown node type %q", typ)
	}
	return nil
}

func (d *decoder) regular(rel string) error {
	tok, err := d.token()
	if err != nil {
		return err
	}
	executable := false
	if tok == "executable" {
		if err := d.expect(""); err != nil {
			return err
		}
		executable = true
		if tok, err = d.token(); err != nil {
			return err
		}
	}
	if tok != "contents" {
		return formatErr("got token %q, want %q", tok, "contents")
	}
	size, err := d.uint("contents length")
	if err != nil {
		return err
	}
	if size > 1<<62 {
		return formatErr("file %q: contents length %d is implausible", rel, size)
	}
	lr := &io.LimitedReader{R: d.r, N: int64(size)}
	if err := d.v.regular(rel, executable, size, lr); err != nil {
		if lr.N > 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return fmt.Errorf("%w: truncated in contents of %q: %w", ErrFormat, rel, io.ErrUnexpectedEOF)
		}
		return err
	}
	if lr.N != 0 {
		return fmt.Errorf("%w: truncated in contents of %q: %w", ErrFormat, rel, io.ErrUnexpectedEOF)
	}
	if err := d.padding(size, "contents"); err != nil {
		return err
	}
	return d.expect(")")
}

func (d *decoder) directory(rel string, depth int) error {
	if err := d.v.directory(rel); err != nil {
		return err
	}
	prev := ""
	for first := true; ; first = false {
		tok, err := d.token()
		if err != nil {
			return err
		}
		if tok == ")" {
			break
		}
		if tok != "entry" {
			return formatErr("got token %q, want \"entry\" or \")\"", tok)
		}
		if err := d.expect("("); err != nil {
			return err
		}
		if err := d.expect("name"); err != nil {
			return err
		}
		name, err := d.str(MaxNameLen, "entry name")
		if err != nil {
			return err
		}
		if err := checkName(name); err != nil {
			return fmt.Errorf("%w: directory %q: %w", ErrFormat, rel, err)
		}
		if !first && name <= prev {
			if name == prev {
				return formatErr("directory %q: duplicate entry %q", rel, name)
			}
			return formatErr("directory %q: entry %q after %q is out of order", rel, name, prev)
		}
		prev = name
		if err := d.expect("node"); err != nil {
			return err
		}
		child := name
		if rel != "" {
			child = rel + "/" + name
		}
		if err := d.node(child, depth+1); err != nil {
			return err
		}
		if err := d.expect(")"); err != nil {
			return err
		}
	}
	return d.v.directoryEnd(rel)
}

// checkName refuses entry names that could escape or alias a directory.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty entry name")
	case name == "." || name == "..":
		return fmt.Errorf("entry name %q", name)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Errorf("entry name %q contains '/'", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("entry name %q contains NUL", name)
	}
	return nil
}

// Verify parses one NAR from r without writing anything and returns its hash
// and size. It reads no byte past the NAR's end.
func Verify(r io.Reader) (Result, error) {
	hr := newHashReader(r)
	if err := decode(hr, discardVisitor{}); err != nil {
		return Result{}, err
	}
	return hr.result(), nil
}

type discardVisitor struct{}

func (discardVisitor) directory(string) error    { return nil }
func (discardVisitor) directoryEnd(string) error { return nil }
func (discardVisitor) symlink(_, _ string) error { return nil }
func (discardVisitor) regular(_ string, _ bool, _ uint64, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
