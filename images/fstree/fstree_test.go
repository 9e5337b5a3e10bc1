package fstree

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixos-via/nixos-via/images/cpio"
)

func TestMergedUsrResolvesParents(t *testing.T) {
	tr := NewMergedUsr()
	tests := []struct{ in, want string }{
		{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"},
		{"/lib64/ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2"},
		{"/bin/sh", "/usr/bin/sh"},
		{"/usr/sbin/sshd", "/usr/sbin/sshd"},
		{"/lib", "/lib"}, // the last component is not followed
		{"/etc/../bin/x", "/usr/bin/x"},
	}
	for _, tt := range tests {
		got, err := tr.Resolve(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := tr.Resolve("relative/path"); err == nil {
		t.Errorf("Resolve(relative) = nil error, want one")
	}
}

func TestRealFilesWinOverAppletLinks(t *testing.T) {
	tr := NewMergedUsr()
	must(t, tr.SymlinkIfAbsent("/sbin/ip", "/bin/busybox"))
	must(t, tr.File("/usr/sbin/ip", []byte("real"), 0o755))
	must(t, tr.SymlinkIfAbsent("/sbin/ip", "/bin/busybox"))
	if e := tr.Get("/sbin/ip"); e == nil || e.Kind != File {
		t.Fatalf("/sbin/ip = %+v, want the real file", e)
	}
	if err := tr.File("/usr", nil, 0o644); err == nil {
		t.Errorf("replacing a directory with a file succeeded, want an error")
	}
}

func TestWriteCPIODeterministicWithParents(t *testing.T) {
	build := func() []byte {
		tr := NewMergedUsr()
		tr.MTime = 42
		must(t, tr.File("/etc/ssh/sshd_config", []byte("Port 22\n"), 0o644))
		must(t, tr.CharDev("/dev/console", 0o600, 5, 1))
		must(t, tr.Symlink("/init", "/bin/busybox"))
		var buf bytes.Buffer
		must(t, tr.WriteCPIO(&buf))
		return buf.Bytes()
	}
	a, b := build(), build()
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds of the same tree differ")
	}
	r := cpio.NewReader(bytes.NewReader(a))
	seen := map[string]*cpio.Header{}
	var order []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
		order = append(order, h.Name)
	}
	for _, name := range []string{"etc", "etc/ssh", "etc/ssh/sshd_config", "dev/console", "lib", "usr/lib64", "init"} {
		h, ok := seen[name]
		if !ok {
			t.Errorf("archive lacks %s (has %v)", name, order)
			continue
		}
		if h.UID != 0 || h.GID != 0 || h.MTime != 42 {
			t.Errorf("%s: uid %d gid %d mtime %d, want 0 0 42", name, h.UID, h.GID, h.MTime)
		}
	}
	if h := seen["dev/console"]; h != nil && (h.Mode&cpio.TypeMask != cpio.TypeChar || h.RDevMajor != 5 || h.RDevMinor != 1) {
		t.Errorf("dev/console = mode %o dev %d:%d, want char 5:1", h.Mode, h.RDevMajor, h.RDevMinor)
	}
	if h := seen["lib"]; h != nil && h.Linkname != "usr/lib" {
		t.Errorf("lib -> %q, want usr/lib", h.Linkname)
	}
}

func TestCopyFileKeepsSetuid(t *testing.T) {
	src := filepath.Join(t.TempDir(), "prog")
	must(t, os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755))
	must(t, os.Chmod(src, 0o755|os.ModeSetuid))
	tr := New()
	must(t, tr.CopyFile("/usr/bin/prog", src, 0))
	if got, want := tr.Get("/usr/bin/prog").Perm, uint32(0o4755); got != want {
		t.Errorf("perm = %o, want %o", got, want)
	}
	if err := tr.CopyFile("/x", filepath.Join(t.TempDir(), "missing"), 0); err == nil {
		t.Errorf("CopyFile of a missing source = nil, want an error")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
