// Package testutil holds the helpers tests of several packages share: a
// snapshot of a file tree, a reader that cuts its stream after so many
// bytes, and checks of what a file holds. It is for tests only.
package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Entry is one path of a Snapshot.
type Entry struct {
	Kind    string      // "file", "dir" or "symlink"
	Mode    fs.FileMode // the permission bits kept by Snapshot's mask; 0 for a symlink
	Content string      // a file's bytes, a symlink's target
}

// Snapshot records the tree at root, each path relative to root ("." is
// root itself). mask says which permission bits count: fs.ModePerm for
// all of them, 0o100 for what a NAR keeps (executable or not).
func Snapshot(t testing.TB, root string, mask fs.FileMode) map[string]Entry {
	t.Helper()
	out := map[string]Entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = Entry{Kind: "symlink", Content: target}
		case fi.IsDir():
			out[rel] = Entry{Kind: "dir", Mode: fi.Mode().Perm() & mask}
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = Entry{Kind: "file", Mode: fi.Mode().Perm() & mask, Content: string(b)}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}

// CutReader reads R until N bytes have passed, then cuts the stream: from
// then on each Read calls Cut (when set) and, unless Continue, returns
// io.EOF. With Continue the stream goes on, so Cut alone does the cutting
// (closing a connection, cancelling a context).
type CutReader struct {
	R        io.Reader
	N        int64 // bytes before the cut
	Cut      func()
	Continue bool

	read int64
}

func (c *CutReader) Read(p []byte) (int, error) {
	left := c.N - c.read
	if left <= 0 {
		if c.Cut != nil {
			c.Cut()
		}
		if !c.Continue {
			return 0, io.EOF
		}
	} else if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.R.Read(p)
	c.read += int64(n)
	return n, err
}

// FileContains says whether the file at path holds needle anywhere. It
// reads in chunks (a disk image may be large), keeping an overlap so that
// a needle across two chunks is found.
func FileContains(path string, needle []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, max(4<<20, 2*len(needle)))
	keep := 0 // bytes kept from the previous chunk
	for {
		n, err := f.Read(buf[keep:])
		total := keep + n
		if bytes.Contains(buf[:total], needle) {
			return true, nil
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read %s: %w", path, err)
		}
		keep = min(len(needle)-1, total)
		copy(buf, buf[total-keep:total])
	}
}

// FileSize is the size of the file at p.
func FileSize(t testing.TB, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
