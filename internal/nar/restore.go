package nar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
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
	// Workers, when above 1, is how many goroutines create small files and
	// symlinks beside the parser, so that file system calls overlap (they
	// dominate restoring many small files). The NAR is still read in order.
	Workers int
	// Buf is scratch space for copying file contents; a caller restoring
	// many NARs passes the same one every time. nil allocates 128 KiB.
	Buf []byte
}

// asyncMax is the largest file a worker creates; bigger ones are written by
// the parser as they stream in.
const asyncMax = 256 << 10

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
	buf := opts.Buf
	if len(buf) == 0 {
		buf = make([]byte, 128<<10)
	}
	rv := &restorer{root: dest, opts: opts, buf: buf}
	rv.start()
	err := decode(hr, rv)
	if werr := rv.wait(); err == nil {
		err = werr
	}
	if err == nil {
		err = rv.finishDirs()
	}
	if err != nil {
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

// job is a file or symlink for a worker to create.
type job struct {
	path   string
	mode   fs.FileMode
	data   *[]byte // file contents (from rv.pool)
	target string  // symlink target, when data is nil
}

// start launches the workers, if any.
func (rv *restorer) start() {
	if rv.opts.Workers <= 1 {
		return
	}
	rv.jobs = make(chan job, 2*rv.opts.Workers)
	rv.pool = &sync.Pool{New: func() any { b := make([]byte, asyncMax); return &b }}
	for i := 0; i < rv.opts.Workers; i++ {
		rv.wg.Add(1)
		go func() {
			defer rv.wg.Done()
			buf := make([]byte, 128<<10)
			for j := range rv.jobs {
				if rv.failed() != nil {
					continue // drain
				}
				rv.fail(rv.create(j, buf))
			}
		}()
	}
}

func (rv *restorer) create(j job, buf []byte) error {
	if j.data == nil {
		if err := os.Symlink(j.target, j.path); err != nil {
			return fmt.Errorf("nar restore: %w", err)
		}
		return nil
	}
	defer rv.pool.Put(j.data)
	return rv.writeFile(j.path, j.mode, bytes.NewReader(*j.data), buf)
}

func (rv *restorer) fail(err error) {
	if err == nil {
		return
	}
	rv.mu.Lock()
	if rv.err == nil {
		rv.err = err
	}
	rv.mu.Unlock()
}

func (rv *restorer) failed() error {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.err
}

// wait stops the workers and returns the first error one of them hit.
func (rv *restorer) wait() error {
	if rv.jobs == nil {
		return nil
	}
	close(rv.jobs)
	rv.wg.Wait()
	return rv.failed()
}

// finishDirs gives directories their final metadata once every entry in
// them exists (creating an entry changes a directory's mtime).
func (rv *restorer) finishDirs() error {
	for i := len(rv.dirs) - 1; i >= 0; i-- {
		if err := rv.finishDir(rv.dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

type restorer struct {
	root string
	opts RestoreOptions
	buf  []byte

	// With workers:
	jobs chan job
	pool *sync.Pool
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	dirs []string // directories to finish after the workers
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
	if rv.jobs != nil {
		rv.dirs = append(rv.dirs, rv.path(rel))
		return rv.failed()
	}
	return rv.finishDir(rv.path(rel))
}

func (rv *restorer) finishDir(p string) error {
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
	if rv.jobs == nil || size > asyncMax {
		if err := rv.failed(); err != nil {
			return err
		}
		return rv.writeFile(p, mode, contents, rv.buf)
	}
	data := rv.pool.Get().(*[]byte)
	*data = (*data)[:size]
	if _, err := io.ReadFull(contents, *data); err != nil {
		rv.pool.Put(data)
		return err
	}
	rv.jobs <- job{path: p, mode: mode, data: data}
	return rv.failed()
}

func (rv *restorer) writeFile(p string, mode fs.FileMode, contents io.Reader, buf []byte) error {
	if err := createFile(p, mode, contents, buf, rv.opts.Fsync); err != nil {
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
	if rv.jobs != nil {
		rv.jobs <- job{path: rv.path(rel), target: target}
		return rv.failed()
	}
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
