package kexec

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzFetchStaysInTheCache unpacks tarballs of files, directories and
// symlinks the fuzzer names (one entry a line: NAME, NAME/ for a
// directory, or NAME -> TARGET) and checks that nothing lands outside the
// cache directory, whatever Fetch answers.
func FuzzFetchStaysInTheCache(f *testing.F) {
	f.Add("kexec/run\nkexec/bzImage\nkexec/initrd")
	f.Add("x -> .\nx/x/x/y/f\nx/x/x/y/l -> ../../../..\nx/x/x/y/l/evil")
	f.Add("a -> b/..\nb -> .\na/evil")
	f.Add("d/\nd/l -> ../..\nd/l/evil\n../evil\n/abs")
	f.Fuzz(func(t *testing.T, listing string) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, line := range strings.Split(listing, "\n") {
			name, link, isLink := strings.Cut(line, " -> ")
			h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: 1}
			switch {
			case isLink:
				h = &tar.Header{Name: name, Linkname: link, Mode: 0o777, Typeflag: tar.TypeSymlink}
			case strings.HasSuffix(name, "/"):
				h = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
			}
			if tw.WriteHeader(h) != nil {
				return
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		file := filepath.Join(t.TempDir(), "installer.tar")
		os.WriteFile(file, buf.Bytes(), 0o644)
		base := t.TempDir()
		cache := filepath.Join(base, "a", "b", "cache")
		Fetch(context.Background(), file, cache, "", nil, nil)
		filepath.Walk(base, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return nil
			}
			if rel, _ := filepath.Rel(cache, p); strings.HasPrefix(rel, "..") {
				t.Errorf("the tarball wrote %s, outside the cache %s\nlisting:\n%s", p, cache, listing)
			}
			return nil
		})
	})
}
