package nar

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Dump writes the NAR serialisation of the file, symlink or directory at path
// to w, as `nix-store --dump` does, and returns its sha256 and size.
// Regular files are executable in the NAR when their owner-execute bit is set;
// other file types (devices, sockets, FIFOs) are refused.
//
// Into a *bytes.Buffer, file contents are read straight into the buffer and
// hashed there (no intermediate copy, no write buffer): the sender serialises
// every small path into memory this way.
func Dump(w io.Writer, path string) (Result, error) {
	mem, _ := w.(*bytes.Buffer)
	var bw *bufio.Writer
	if mem == nil {
		bw = bufio.NewWriterSize(w, 256<<10)
		w = bw
	}
	hw := newHashWriter(w)
	e := &encoder{w: hw, mem: mem, hw: hw}
	if err := e.str(magic); err != nil {
		return Result{}, fmt.Errorf("nar dump %s: %w", path, err)
	}
	if err := dumpNode(e, hw, path); err != nil {
		return Result{}, err
	}
	if bw != nil {
		if err := bw.Flush(); err != nil {
			return Result{}, fmt.Errorf("nar dump %s: %w", path, err)
		}
	}
	return hw.result(), nil
}

// HashPath returns the NAR hash and size of path without keeping the bytes,
// like `nix hash path`.
func HashPath(path string) (Result, error) {
	return Dump(io.Discard, path)
}

func dumpNode(e *encoder, w io.Writer, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("nar dump: %w", err)
	}
	if err := e.str("("); err != nil {
		return fmt.Errorf("nar dump %s: %w", path, err)
	}
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		if err := dumpFile(e, w, path, fi); err != nil {
			return err
		}
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("nar dump: %w", err)
		}
		if err := e.strs("type", "symlink", "target", target); err != nil {
			return fmt.Errorf("nar dump %s: %w", path, err)
		}
	case mode.IsDir():
		if err := e.strs("type", "directory"); err != nil {
			return fmt.Errorf("nar dump %s: %w", path, err)
		}
		names, err := readDirNames(path)
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := e.strs("entry", "(", "name", name, "node"); err != nil {
				return fmt.Errorf("nar dump %s: %w", path, err)
			}
			if err := dumpNode(e, w, filepath.Join(path, name)); err != nil {
				return err
			}
			if err := e.str(")"); err != nil {
				return fmt.Errorf("nar dump %s: %w", path, err)
			}
		}
	default:
		return fmt.Errorf("nar dump %s: unsupported file type %s", path, mode.Type())
	}
	if err := e.str(")"); err != nil {
		return fmt.Errorf("nar dump %s: %w", path, err)
	}
	return nil
}

func readDirNames(path string) ([]string, error) {
	d, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nar dump: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("nar dump: read directory %s: %w", path, err)
	}
	sort.Strings(names) // byte order, as Nix's std::map<std::string>
	return names, nil
}

func dumpFile(e *encoder, w io.Writer, path string, fi fs.FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("nar dump: %w", err)
	}
	defer f.Close()
	if err := e.strs("type", "regular"); err != nil {
		return fmt.Errorf("nar dump %s: %w", path, err)
	}
	if fi.Mode()&0o100 != 0 {
		if err := e.strs("executable", ""); err != nil {
			return fmt.Errorf("nar dump %s: %w", path, err)
		}
	}
	size := uint64(fi.Size())
	if err := e.str("contents"); err != nil {
		return fmt.Errorf("nar dump %s: %w", path, err)
	}
	if err := e.uint(size); err != nil {
		return fmt.Errorf("nar dump %s: %w", path, err)
	}
	var n int64
	if e.mem != nil {
		start := e.mem.Len()
		n, err = e.mem.ReadFrom(io.LimitReader(f, int64(size)))
		e.hw.hashOnly(e.mem.Bytes()[start:])
	} else {
		if e.copyBuf == nil {
			e.copyBuf = make([]byte, 128<<10)
		}
		n, err = io.CopyBuffer(w, io.LimitReader(f, int64(size)), e.copyBuf)
	}
	if err != nil {
		return fmt.Errorf("nar dump %s: %w", path, err)
	}
	if uint64(n) != size {
		return fmt.Errorf("nar dump %s: file shrank while reading: read %d of %d bytes", path, n, size)
	}
	if err := e.pad(size); err != nil {
		return fmt.Errorf("nar dump %s: %w", path, err)
	}
	return nil
}
