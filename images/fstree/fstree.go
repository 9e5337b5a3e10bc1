// Package fstree is an in-memory file tree for building initramfs images:
// directories, files (bytes or copied from the host), symlinks and device
// nodes, all owned by 0:0. It writes itself as a newc cpio in sorted path
// order with one fixed mtime, so equal inputs give equal archives.
package fstree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nixos-via/nixos-via/images/cpio"
)

// Kind is the type of an Entry.
type Kind int

// Entry kinds.
const (
	Dir Kind = iota
	File
	Symlink
	CharDev
)

// Entry is one node of the tree.
type Entry struct {
	Kind   Kind
	Perm   uint32 // permission bits including setuid/setgid/sticky
	Data   []byte // File content, when Source is empty
	Source string // host file whose content is copied at write time
	Target string // Symlink target
	Major  uint32 // CharDev numbers
	Minor  uint32
}

// Tree maps clean absolute paths ("/usr/bin/sh") to entries. The zero value
// is not usable; call New or NewMergedUsr.
type Tree struct {
	entries map[string]*Entry
	// MTime is written as every entry's modification time.
	MTime int64
}

// New returns an empty tree holding only "/".
func New() *Tree {
	return &Tree{entries: map[string]*Entry{"/": {Kind: Dir, Perm: 0o755}}}
}

// NewMergedUsr returns a tree laid out like Debian 12's merged /usr:
// /bin, /sbin, /lib and /lib64 are symlinks into /usr.
func NewMergedUsr() *Tree {
	t := New()
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		// Cannot fail on a fresh tree.
		_ = t.Symlink("/"+d, "usr/"+d)
		_ = t.Dir("/usr/"+d, 0o755)
	}
	return t
}

func clean(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("fstree: path %q is not absolute", p)
	}
	return path.Clean(p), nil
}

// Resolve returns p with every directory symlink among its parents replaced
// by its target, the way the kernel would walk it inside the tree. The last
// component is not followed.
func (t *Tree) Resolve(p string) (string, error) {
	p, err := clean(p)
	if err != nil {
		return "", err
	}
	for hops := 0; hops < 40; hops++ {
		changed := false
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		for i := 0; i < len(parts)-1; i++ {
			prefix := "/" + strings.Join(parts[:i+1], "/")
			e, ok := t.entries[prefix]
			if !ok || e.Kind != Symlink {
				continue
			}
			target := e.Target
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(prefix), target)
			}
			p = path.Join(append([]string{target}, parts[i+1:]...)...)
			changed = true
			break
		}
		if !changed {
			return p, nil
		}
	}
	return "", fmt.Errorf("fstree: too many symlinks resolving %q", p)
}

func (t *Tree) ensureParents(p string) error {
	dir := path.Dir(p)
	if dir == p {
		return nil
	}
	if e, ok := t.entries[dir]; ok {
		if e.Kind != Dir {
			return fmt.Errorf("fstree: %s: parent %s is not a directory", p, dir)
		}
		return nil
	}
	if err := t.ensureParents(dir); err != nil {
		return err
	}
	t.entries[dir] = &Entry{Kind: Dir, Perm: 0o755}
	return nil
}

func (t *Tree) put(p string, e *Entry, replace bool) error {
	p, err := t.Resolve(p)
	if err != nil {
		return err
	}
	if old, ok := t.entries[p]; ok {
		if old.Kind == Dir && e.Kind == Dir {
			old.Perm = e.Perm
			return nil
		}
		if old.Kind == Dir || e.Kind == Dir {
			return fmt.Errorf("fstree: %s: cannot replace a %s with a %s", p, old.Kind, e.Kind)
		}
		if !replace {
			return nil
		}
	}
	if err := t.ensureParents(p); err != nil {
		return err
	}
	t.entries[p] = e
	return nil
}

// Dir adds a directory (and its missing parents, mode 0755).
func (t *Tree) Dir(p string, perm uint32) error {
	return t.put(p, &Entry{Kind: Dir, Perm: perm}, true)
}

// File adds a file with the given content.
func (t *Tree) File(p string, data []byte, perm uint32) error {
	return t.put(p, &Entry{Kind: File, Perm: perm, Data: data}, true)
}

// CopyFile adds a file whose content is read from the host file src
// (symlinks followed) when the tree is written. perm 0 takes the source's
// permission bits.
func (t *Tree) CopyFile(p, src string, perm uint32) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("fstree: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("fstree: %s is not a regular file", src)
	}
	if perm == 0 {
		perm = unixPerm(st.Mode())
	}
	return t.put(p, &Entry{Kind: File, Perm: perm, Source: src}, true)
}

func unixPerm(m fs.FileMode) uint32 {
	perm := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	return perm
}

// Symlink adds a symlink, replacing a file or symlink already there.
func (t *Tree) Symlink(p, target string) error {
	if target == "" {
		return fmt.Errorf("fstree: symlink %s has an empty target", p)
	}
	return t.put(p, &Entry{Kind: Symlink, Perm: 0o777, Target: target}, true)
}

// SymlinkIfAbsent adds a symlink unless something already exists at p.
func (t *Tree) SymlinkIfAbsent(p, target string) error {
	if target == "" {
		return fmt.Errorf("fstree: symlink %s has an empty target", p)
	}
	return t.put(p, &Entry{Kind: Symlink, Perm: 0o777, Target: target}, false)
}

// CharDev adds a character device node such as /dev/console (5, 1).
func (t *Tree) CharDev(p string, perm, major, minor uint32) error {
	return t.put(p, &Entry{Kind: CharDev, Perm: perm, Major: major, Minor: minor}, true)
}

// Remove deletes the entry at p (parents resolved). Removing a directory
// that still has children is an error; removing nothing is not.
func (t *Tree) Remove(p string) error {
	r, err := t.Resolve(p)
	if err != nil {
		return err
	}
	e, ok := t.entries[r]
	if !ok {
		return nil
	}
	if e.Kind == Dir {
		for q := range t.entries {
			if strings.HasPrefix(q, r+"/") {
				return fmt.Errorf("fstree: remove %s: directory not empty", r)
			}
		}
	}
	delete(t.entries, r)
	return nil
}

// Get returns the entry at p (parents resolved), or nil.
func (t *Tree) Get(p string) *Entry {
	r, err := t.Resolve(p)
	if err != nil {
		return nil
	}
	return t.entries[r]
}

// Paths returns every path in the tree in the order they are written.
func (t *Tree) Paths() []string {
	out := make([]string, 0, len(t.entries))
	for p := range t.entries {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Size returns the total size in bytes of the tree's file contents.
func (t *Tree) Size() (int64, error) {
	var n int64
	for _, e := range t.entries {
		if e.Kind != File {
			continue
		}
		if e.Source == "" {
			n += int64(len(e.Data))
			continue
		}
		st, err := os.Stat(e.Source)
		if err != nil {
			return 0, fmt.Errorf("fstree: %w", err)
		}
		n += st.Size()
	}
	return n, nil
}

func (k Kind) String() string {
	switch k {
	case Dir:
		return "directory"
	case File:
		return "file"
	case Symlink:
		return "symlink"
	case CharDev:
		return "char device"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// WriteCPIO writes the tree as a newc archive (without "/" itself).
func (t *Tree) WriteCPIO(w io.Writer) error {
	cw := cpio.NewWriter(w)
	for _, p := range t.Paths() {
		if p == "/" {
			continue
		}
		e := t.entries[p]
		h := &cpio.Header{Name: strings.TrimPrefix(p, "/"), MTime: t.MTime}
		switch e.Kind {
		case Dir:
			h.Mode = cpio.TypeDir | e.Perm
		case Symlink:
			h.Mode = cpio.TypeSymlink | 0o777
			h.Linkname = e.Target
		case CharDev:
			h.Mode = cpio.TypeChar | e.Perm
			h.RDevMajor, h.RDevMinor = e.Major, e.Minor
		case File:
			h.Mode = cpio.TypeReg | e.Perm
			if e.Source == "" {
				h.Size = int64(len(e.Data))
				if err := cw.WriteHeader(h); err != nil {
					return err
				}
				if _, err := cw.Write(e.Data); err != nil {
					return err
				}
				continue
			}
			if err := copySource(cw, h, e.Source); err != nil {
				return err
			}
			continue
		}
		if err := cw.WriteHeader(h); err != nil {
			return err
		}
	}
	return cw.Close()
}

func copySource(cw *cpio.Writer, h *cpio.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("fstree: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("fstree: %w", err)
	}
	h.Size = st.Size()
	if err := cw.WriteHeader(h); err != nil {
		return err
	}
	if n, err := io.Copy(cw, f); err != nil {
		return fmt.Errorf("fstree: copy %s: %w", src, err)
	} else if n != h.Size {
		return fmt.Errorf("fstree: copy %s: size changed while reading (%d of %d bytes)", src, n, h.Size)
	}
	return nil
}

// WriteDir materialises the tree under dir on the host (which must exist),
// for chroot tests. Device nodes are created only when running as root.
func (t *Tree) WriteDir(dir string) error {
	for _, p := range t.Paths() {
		if p == "/" {
			continue
		}
		e := t.entries[p]
		dst := filepath.Join(dir, filepath.FromSlash(p))
		var err error
		switch e.Kind {
		case Dir:
			err = os.MkdirAll(dst, fs.FileMode(e.Perm&0o777))
		case Symlink:
			err = os.Symlink(e.Target, dst)
		case CharDev:
			err = mknodChar(dst, e.Perm, e.Major, e.Minor)
		case File:
			data := e.Data
			if e.Source != "" {
				data, err = os.ReadFile(e.Source)
			}
			if err == nil {
				err = os.WriteFile(dst, data, fs.FileMode(e.Perm&0o777))
			}
			if err == nil && e.Perm&0o7000 != 0 {
				err = os.Chmod(dst, fs.FileMode(e.Perm&0o777)|modeBits(e.Perm))
			}
		}
		if err != nil {
			return fmt.Errorf("fstree: write %s: %w", dst, err)
		}
	}
	return nil
}

func modeBits(perm uint32) fs.FileMode {
	var m fs.FileMode
	if perm&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if perm&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if perm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// errNotRoot is returned by WriteDir for device nodes when not root.
var errNotRoot = errors.New("creating device nodes needs root")
