package cpio

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeSample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	entries := []struct {
		h    Header
		data string
	}{
		{Header{Name: "etc", Mode: TypeDir | 0o755, MTime: 1000}, ""},
		{Header{Name: "etc/hello", Mode: TypeReg | 0o640, MTime: 1000, Size: 6}, "hello\n"},
		{Header{Name: "etc/odd", Mode: TypeReg | 0o600, MTime: 1000, Size: 3}, "abc"},
		{Header{Name: "etc/link", Mode: TypeSymlink | 0o777, MTime: 1000, Linkname: "hello"}, ""},
		{Header{Name: "dev", Mode: TypeDir | 0o755, MTime: 1000}, ""},
		{Header{Name: "dev/console", Mode: TypeChar | 0o600, MTime: 1000, RDevMajor: 5, RDevMinor: 1}, ""},
	}
	for _, e := range entries {
		h := e.h
		if err := w.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader(%s): %v", h.Name, err)
		}
		if e.data != "" {
			if _, err := io.WriteString(w, e.data); err != nil {
				t.Fatalf("Write(%s): %v", h.Name, err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

func TestRealCpioListsArchive(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed: ", err)
	}
	archive := writeSample(t)
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	got := strings.Fields(string(out))
	want := []string{"etc", "etc/hello", "etc/odd", "etc/link", "dev", "dev/console"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("cpio -t listed %q, want %q", got, want)
	}
}

func TestRealCpioExtractsArchive(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed: ", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("extracting device nodes needs root")
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "-m", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(writeSample(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "etc/hello"))
	if err != nil || string(data) != "hello\n" {
		t.Errorf("etc/hello = %q, %v; want %q", data, err, "hello\n")
	}
	st, err := os.Stat(filepath.Join(dir, "etc/hello"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Mode().Perm(), os.FileMode(0o640); got != want {
		t.Errorf("etc/hello mode = %v, want %v", got, want)
	}
	if got, want := st.ModTime().Unix(), int64(1000); got != want {
		t.Errorf("etc/hello mtime = %d, want %d", got, want)
	}
	if target, err := os.Readlink(filepath.Join(dir, "etc/link")); err != nil || target != "hello" {
		t.Errorf("etc/link -> %q, %v; want hello", target, err)
	}
	dst, err := os.Stat(filepath.Join(dir, "dev/console"))
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("dev/console mode = %v, want a char device", dst.Mode())
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "etc/odd")); string(data) != "abc" {
		t.Errorf("etc/odd = %q, want abc", data)
	}
}

func TestReaderRoundTripConcatenated(t *testing.T) {
	one := writeSample(t)
	// The kernel accepts concatenated archives with zero padding between.
	stream := append(append(append([]byte{}, one...), make([]byte, 512)...), one...)
	r := NewReader(bytes.NewReader(stream))
	var names []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		names = append(names, h.Name)
		if h.Name == "etc/hello" {
			data, _ := io.ReadAll(r)
			if string(data) != "hello\n" {
				t.Errorf("etc/hello data = %q", data)
			}
		}
		if h.Name == "etc/link" && h.Linkname != "hello" {
			t.Errorf("etc/link target = %q, want hello", h.Linkname)
		}
	}
	if got, want := len(names), 12; got != want {
		t.Errorf("read %d entries (%v), want %d", got, names, want)
	}
}

func TestWriterRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		h    Header
	}{
		{"empty name", Header{Name: "", Mode: TypeReg | 0o644}},
		{"trailer name", Header{Name: "TRAILER!!!", Mode: TypeReg | 0o644}},
		{"symlink without target", Header{Name: "x", Mode: TypeSymlink | 0o777}},
		{"socket", Header{Name: "s", Mode: 0o140000 | 0o644}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWriter(io.Discard)
			if err := w.WriteHeader(&tt.h); err == nil {
				t.Errorf("WriteHeader(%+v) = nil, want an error", tt.h)
			}
		})
	}
	w := NewWriter(io.Discard)
	if err := w.WriteHeader(&Header{Name: "short", Mode: TypeReg | 0o644, Size: 10}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "abc")
	if err := w.Close(); err == nil {
		t.Errorf("Close after a short entry = nil, want an error")
	}
}
