package nar

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkRestoreSmallFiles restores a tree of 2000 small files in 40
// directories with the store's metadata (Canonical), as the install agent
// does: per-file system calls dominate, as in a real system closure. On a
// disk, writeback and ext4's reuse of just-deleted inodes make the numbers
// swing; TMPDIR=/dev/shm measures the system calls alone.
func BenchmarkRestoreSmallFiles(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	content := bytes.Repeat([]byte("nixos-via "), 400) // 4000 bytes
	for d := 0; d < 40; d++ {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 50; f++ {
			mode := os.FileMode(0o644)
			if f%10 == 0 {
				mode = 0o755
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", f)), content[:1000+f*60], mode); err != nil {
				b.Fatal(err)
			}
		}
	}
	var nar bytes.Buffer
	if _, err := Dump(&nar, src); err != nil {
		b.Fatal(err)
	}
	dst := b.TempDir()
	buf := make([]byte, 128<<10)
	b.SetBytes(int64(nar.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Restore(bytes.NewReader(nar.Bytes()), filepath.Join(dst, fmt.Sprint(i)), RestoreOptions{Canonical: true, Buf: buf}); err != nil {
			b.Fatal(err)
		}
	}
}
