package nar

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/testutil"
)

// makeTree builds a tree with every kind of node a store path can hold.
func makeTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "names"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(root, "empty-file"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "eight"), []byte("12345678"), 0o644))
	must(os.WriteFile(filepath.Join(root, "big"), bytes.Repeat([]byte("0123456789abcdef\x00"), 20000), 0o644))
	must(os.MkdirAll(filepath.Join(root, "share", "empty-dir"), 0o755))
	must(os.Symlink("../bin/tool", filepath.Join(root, "share", "rel-link")))
	must(os.Symlink("/nix/store/does-not-exist", filepath.Join(root, "dangling")))
	must(os.Symlink("share", filepath.Join(root, "dir-link")))
	// Names whose byte order differs from case-insensitive or locale order.
	for _, n := range []string{"B", "a", "a-b", "a.b", "a_b", "Z", "ü", "with space", "-dash"} {
		must(os.WriteFile(filepath.Join(root, "names", n), []byte(n), 0o644))
	}
	deep := filepath.Join(root, "deep")
	for i := 0; i < 40; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("d%02d", i))
	}
	must(os.MkdirAll(deep, 0o755))
	must(os.WriteFile(filepath.Join(deep, "leaf"), []byte("bottom"), 0o600))
}

func newTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	makeTree(t, root)
	return root
}

// snapshot records what a NAR can express about a tree: kinds, contents,
// symlink targets and whether a file is executable.
func snapshot(t *testing.T, root string) map[string]testutil.Entry {
	t.Helper()
	return testutil.Snapshot(t, root, 0o100)
}

func TestRoundTrip(t *testing.T) {
	src := newTree(t)
	var buf bytes.Buffer
	res, err := Dump(&buf, src)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != uint64(buf.Len()) || res.Hash != sha256.Sum256(buf.Bytes()) {
		t.Fatalf("Dump result = %d bytes %s, want %d bytes %s", res.Size, res.Hash, buf.Len(), Hash(sha256.Sum256(buf.Bytes())))
	}
	for _, tc := range []struct {
		canonical bool
		workers   int
	}{{false, 0}, {true, 0}, {true, 4}, {false, 3}} {
		canonical := tc.canonical
		t.Run(fmt.Sprintf("canonical=%v,workers=%d", canonical, tc.workers), func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			trailer := []byte("data after the NAR")
			r := bytes.NewReader(append(append([]byte{}, buf.Bytes()...), trailer...))
			got, err := Restore(r, dest, RestoreOptions{Canonical: canonical, Fsync: true, Workers: tc.workers})
			if err != nil {
				t.Fatal(err)
			}
			if got != res {
				t.Errorf("Restore result = %+v, want %+v", got, res)
			}
			if rest, _ := io.ReadAll(r); !bytes.Equal(rest, trailer) {
				t.Errorf("Restore consumed bytes past the NAR: left %q, want %q", rest, trailer)
			}
			want, have := snapshot(t, src), snapshot(t, dest)
			if len(want) != len(have) {
				t.Errorf("restored tree has %d entries, want %d", len(have), len(want))
			}
			for p, w := range want {
				if h, ok := have[p]; !ok || h != w {
					t.Errorf("restored %q = %+v, want %+v", p, h, w)
				}
			}
			var again bytes.Buffer
			if _, err := Dump(&again, dest); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), buf.Bytes()) {
				t.Errorf("NAR of the restored tree differs from the original")
			}
			if canonical {
				checkCanonical(t, dest)
			}
			if err := RemoveAll(dest); err != nil {
				t.Fatalf("RemoveAll of a canonical tree: %v", err)
			}
			if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after RemoveAll, Lstat(%s) = %v, want not exist", dest, err)
			}
		})
	}
}

func checkCanonical(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		fi, _ := os.Lstat(p)
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		want := fs.FileMode(0o444)
		if fi.IsDir() || fi.Mode()&0o100 != 0 {
			want = 0o555
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		if fi.ModTime().Unix() != 1 {
			t.Errorf("%s: mtime %v, want 1", p, fi.ModTime().Unix())
		}
		return nil
	})
}

func TestRootKinds(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("just a file"), 0o755)
	link := filepath.Join(dir, "link")
	os.Symlink("/somewhere/else", link)
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	for _, src := range []string{file, link, empty} {
		var buf bytes.Buffer
		res, err := Dump(&buf, src)
		if err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "r")
		got, err := Restore(bytes.NewReader(buf.Bytes()), dest, RestoreOptions{Canonical: true})
		if err != nil {
			t.Fatalf("Restore(%s): %v", filepath.Base(src), err)
		}
		if got != res {
			t.Errorf("%s: Restore result %+v, want %+v", filepath.Base(src), got, res)
		}
		a, b := snapshot(t, src), snapshot(t, dest)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: restored %v, want %v", filepath.Base(src), b, a)
		}
	}
}

func TestDumpRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := exec.Command("mkfifo", fifo).Run(); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := Dump(io.Discard, dir)
	if err == nil || !strings.Contains(err.Error(), "unsupported file type") {
		t.Errorf("Dump of a dir with a FIFO: error = %v, want unsupported file type", err)
	}
}

func TestRestoreRefusesExistingDest(t *testing.T) {
	src := newTree(t)
	var buf bytes.Buffer
	Dump(&buf, src)
	dest := t.TempDir()
	if _, err := Restore(&buf, dest, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Restore onto an existing dir: error = %v, want already exists", err)
	}
}

// narBuilder hand-writes NARs, valid or not.
type narBuilder struct{ bytes.Buffer }

func (b *narBuilder) s(ss ...string) *narBuilder {
	e := &encoder{w: &b.Buffer}
	e.strs(ss...)
	return b
}

func (b *narBuilder) raw(p []byte) *narBuilder { b.Write(p); return b }

func dirNAR(entries ...[2]string) []byte {
	b := &narBuilder{}
	b.s(magic, "(", "type", "directory")
	for _, e := range entries {
		b.s("entry", "(", "name", e[0], "node", "(", "type", "regular", "contents", e[1], ")", ")")
	}
	b.s(")")
	return b.Bytes()
}

func TestDecoderRefuses(t *testing.T) {
	deep := &narBuilder{}
	deep.s(magic)
	for i := 0; i <= MaxDepth+1; i++ {
		deep.s("(", "type", "directory", "entry", "(", "name", "d", "node")
	}
	badPad := &narBuilder{}
	badPad.s(magic, "(", "type", "regular", "contents")
	badPad.raw([]byte{3, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 0, 0, 1, 0, 0})
	badPad.s(")")
	valid := dirNAR([2]string{"a", "x"}, [2]string{"b", "y"})
	tests := []struct {
		name string
		nar  []byte
		want string
	}{
		{"empty input", nil, "truncated"},
		{"wrong magic", (&narBuilder{}).s("nix-archive-2").Bytes(), "want \"nix-archive-1\""},
		{"dot dot", dirNAR([2]string{"..", "x"}), `entry name ".."`},
		{"dot", dirNAR([2]string{".", "x"}), `entry name "."`},
		{"slash", dirNAR([2]string{"a/b", "x"}), "contains '/'"},
		{"traversal", dirNAR([2]string{"../../etc/passwd", "x"}), "contains '/'"},
		{"nul", dirNAR([2]string{"a\x00b", "x"}), "contains NUL"},
		{"empty name", dirNAR([2]string{"", "x"}), "empty entry name"},
		{"duplicate", dirNAR([2]string{"a", "x"}, [2]string{"a", "y"}), "duplicate entry"},
		{"unsorted", dirNAR([2]string{"b", "x"}, [2]string{"a", "y"}), "out of order"},
		{"unknown type", (&narBuilder{}).s(magic, "(", "type", "fifo", ")").Bytes(), "unknown node type"},
		{"non-zero padding", badPad.Bytes(), "non-zero padding"},
		{"truncated contents", valid[:len(valid)-40], "truncated"},
		{"truncated header", valid[:5], "truncated"},
		{"name too long", dirNAR([2]string{strings.Repeat("n", 256), "x"}), "limit 255"},
		{"huge token", (&narBuilder{}).s(magic, "(", "type", strings.Repeat("r", 100)).Bytes(), "limit 16"},
		{"empty symlink", (&narBuilder{}).s(magic, "(", "type", "symlink", "target", "", ")").Bytes(), "invalid target"},
		{"too deep", deep.Bytes(), "nested deeper"},
		{"executable flag value", (&narBuilder{}).s(magic, "(", "type", "regular", "executable", "yes").Bytes(), `want ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, workers := range []int{0, 4} {
				dest := filepath.Join(t.TempDir(), "out")
				_, err := Restore(bytes.NewReader(tt.nar), dest, RestoreOptions{Canonical: true, Workers: workers})
				if err == nil {
					t.Fatalf("Restore (workers %d) succeeded, want an error mentioning %q", workers, tt.want)
				}
				if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Restore (workers %d) error = %v, want ErrFormat mentioning %q", workers, err, tt.want)
				}
				if _, statErr := os.Lstat(dest); !errors.Is(statErr, fs.ErrNotExist) {
					t.Errorf("after a refused NAR (workers %d), %s exists (Lstat: %v)", workers, dest, statErr)
				}
			}
			dest := filepath.Join(t.TempDir(), "out")
			_, err := Restore(bytes.NewReader(tt.nar), dest, RestoreOptions{Canonical: true})
			if err == nil {
				t.Fatalf("Restore succeeded, want an error mentioning %q", tt.want)
			}
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Restore error = %v, want ErrFormat mentioning %q", err, tt.want)
			}
			if _, statErr := os.Lstat(dest); !errors.Is(statErr, fs.ErrNotExist) {
				t.Errorf("after a refused NAR, %s exists (Lstat: %v)", dest, statErr)
			}
			if _, err := Verify(bytes.NewReader(tt.nar)); err == nil {
				t.Errorf("Verify accepted what Restore refused")
			}
		})
	}
}

// TestMatchesNix compares our NAR bytes and hashes with Nix's own on real trees.
func TestMatchesNix(t *testing.T) {
	nixStore, err := exec.LookPath("nix-store")
	if err != nil {
		t.Skip("nix-store not installed (apt-get install nix-bin)")
	}
	trees := []string{newTree(t)}
	for _, p := range []string{"/usr/share/zoneinfo", "/usr/share/doc/nix-bin", "/etc/ssh", "/bin/sh"} {
		if _, err := os.Lstat(p); err == nil {
			trees = append(trees, p)
		}
	}
	for _, p := range trees {
		t.Run(strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			want, err := exec.Command(nixStore, "--dump", p).Output()
			if err != nil {
				t.Fatalf("nix-store --dump %s: %v", p, err)
			}
			var got bytes.Buffer
			res, err := Dump(&got, p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("NAR of %s differs from nix-store --dump (%d vs %d bytes)", p, got.Len(), len(want))
			}
			out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "hash", "path", "--base32", p).Output()
			if err != nil {
				t.Skipf("nix hash path: %v", err)
			}
			if w := "sha256:" + strings.TrimSpace(string(out)); res.Hash.String() != w {
				t.Errorf("hash of %s = %s, nix hash path says %s", p, res.Hash, w)
			}
			out, err = exec.Command("nix", "--extra-experimental-features", "nix-command", "hash", "path", p).Output()
			if err == nil && res.Hash.SRI() != strings.TrimSpace(string(out)) {
				t.Errorf("SRI hash of %s = %s, nix hash path says %s", p, res.Hash.SRI(), strings.TrimSpace(string(out)))
			}
			// And Nix restores our NAR to the same tree.
			dest := filepath.Join(t.TempDir(), "restored")
			cmd := exec.Command(nixStore, "--restore", dest)
			cmd.Stdin = bytes.NewReader(got.Bytes())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nix-store --restore: %v: %s", err, out)
			}
			again, err := HashPath(dest)
			if err != nil || again != res {
				t.Errorf("hash after nix-store --restore = %+v (%v), want %+v", again, err, res)
			}
		})
	}
}

// TestDumpIntoMemoryMatchesStreaming: Dump into a *bytes.Buffer (file
// contents read straight into it) writes the same NAR and hash as Dump
// into any other writer, also appending after bytes already there.
func TestDumpIntoMemoryMatchesStreaming(t *testing.T) {
	root := newTree(t)
	var streamed bytes.Buffer
	want, err := Dump(struct{ io.Writer }{&streamed}, root)
	if err != nil {
		t.Fatal(err)
	}
	mem := bytes.NewBufferString("header")
	got, err := Dump(mem, root)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("into memory: %s %d bytes, want %s %d", got.Hash, got.Size, want.Hash, want.Size)
	}
	if !bytes.Equal(mem.Bytes()[len("header"):], streamed.Bytes()) || !bytes.HasPrefix(mem.Bytes(), []byte("header")) {
		t.Errorf("into memory: the NAR differs from the streamed one (%d vs %d bytes)", mem.Len()-len("header"), streamed.Len())
	}
}
