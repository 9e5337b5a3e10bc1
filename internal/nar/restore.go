package nar

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Canonical gives the restored tree the metadata Nix gives store paths:
	// files 0444 (0555 when executable), directories 0555, mtime 1 s after the
	// epoch. Without it files are 0644/0755 and directories 0755.
	Canonical bool
	// Fsync syncs every file and directory before Restore returns. Callers
	// that sync the whole filesystem once (syncfs) leave it off.
	Fsync bool
}

// canonicalTime is the mtime Nix gives every file in the store.
var canonicalTime = time.Unix(1, 0)

// Restore reads one NAR from r and creates it at dest, which must not exist;
// dest becomes the NAR's root (a file, a symlink or a directory). It reads no
// byte past the NAR's end, so r may carry more data after it; r should be
// buffered, as Restore reads it in small pieces. It hashes what it reads and
// returns the hash and size. On error nothing is left at dest.
func Restore(r io.Reader, dest string, opts RestoreOptions) (Result, error) {
	if _, err := os.Lstat(dest); err == nil {
		return Result{}, fmt.Errorf("nar restore: %s already exists", dest)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Result{}, fmt.Errorf("nar restore: %w", err)
	}
	hr := newHashReader(r)
	rv := &restorer{root: dest, opts: opts, buf: make([]byte, 128<<10)}
	if err := decode(hr, rv); err != nil {
		if rmErr := RemoveAll(dest); rmErr != nil {
			return Result{}, errors.Join(err, rmErr)
		}
		return Result{}, err
	}
	if opts.Fsync {
		if err := syncDir(filepath.Dir(dest)); err != nil {
			return Result{}, errors.Join(err, RemoveAll(dest))
		}
	}
	return hr.result(), nil
}

type restorer struct {
	root string
	opts RestoreOptions
	buf  []byte
}

func (rv *restorer) path(rel string) string {
	if rel == "" {
		return rv.root
	}
	return rv.root + "/" + rel
}

func (rv *restorer) directory(rel string) error {
	if err := os.Mkdir(rv.path(rel), 0o755); err != nil {
		return fmt.Errorf("nar restore: %w", err)
	}
	return nil
}

func (rv *restorer) directoryEnd(rel string) error {
	p := rv.path(rel)
	if rv.opts.Fsync {
		if err := syncDir(p); err != nil {
			return err
		}
	}
	if !rv.opts.Canonical {
		return nil
	}
	if err := os.Chmod(p, 0o555); err != nil {
		return fmt.Errorf("nar restore: %w", err)
	}
	if err := os.Chtimes(p, canonicalTime, canonicalTime); err != nil {
		return fmt.Errorf("nar restore: %w", err)
	}
	return nil
}

func (rv *restorer) regular(rel string, executable bool, size uint64, contents io.Reader) error {
	p := rv.path(rel)
	mode := fs.FileMode(0o644)
	if rv.opts.Canonical {
		mode = 0o444
	}
	if executable {
		mode |= 0o111
	}
	if err := createFile(p, mode, contents, rv.buf, rv.opts.Fsync); err != nil {
		return fmt.Errorf("nar restore: %w", err)
	}
	if rv.opts.Canonical {
		if err := os.Chtimes(p, canonicalTime, canonicalTime); err != nil {
			return fmt.Errorf("nar restore: %w", err)
		}
	}
	return nil
}

func (rv *restorer) symlink(rel, target string) error {
	if err := os.Symlink(target, rv.path(rel)); err != nil {
		return fmt.Errorf("nar restore: %w", err)
	}
	return nil
}

func syncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("nar restore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("nar restore: fsync %s: %w", p, err)
	}
	return nil
}

// RemoveAll removes path and everything below it, first making read-only
// directories (as in a canonical store path) writable. A missing path is no error.
func RemoveAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	// Make every directory writable, then try again.
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
