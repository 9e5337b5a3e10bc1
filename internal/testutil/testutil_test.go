package testutil

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSnapshot(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(root, "d"), 0o750))
	must(os.WriteFile(filepath.Join(root, "d", "tool"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(root, "notes"), []byte("hi"), 0o640))
	must(os.Symlink("d/tool", filepath.Join(root, "link")))
	must(os.Chmod(root, 0o700))

	tests := []struct {
		name string
		mask fs.FileMode
		want map[string]Entry
	}{
		{"every permission bit", fs.ModePerm, map[string]Entry{
			".":      {Kind: "dir", Mode: 0o700},
			"d":      {Kind: "dir", Mode: 0o750},
			"d/tool": {Kind: "file", Mode: 0o755, Content: "#!/bin/sh\n"},
			"notes":  {Kind: "file", Mode: 0o640, Content: "hi"},
			"link":   {Kind: "symlink", Content: "d/tool"},
		}},
		{"executable only", 0o100, map[string]Entry{
			".":      {Kind: "dir", Mode: 0o100},
			"d":      {Kind: "dir", Mode: 0o100},
			"d/tool": {Kind: "file", Mode: 0o100, Content: "#!/bin/sh\n"},
			"notes":  {Kind: "file", Content: "hi"},
			"link":   {Kind: "symlink", Content: "d/tool"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Snapshot(t, root, tc.mask); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Snapshot = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCutReader(t *testing.T) {
	tests := []struct {
		name     string
		n        int64
		cont     bool
		want     string
		wantCuts bool
	}{
		{"cut in the middle", 4, false, "0123", true},
		{"cut at zero", 0, false, "", true},
		{"cut past the end", 20, false, "0123456789", false},
		{"continue after the cut", 4, true, "0123456789", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cuts := 0
			r := &CutReader{R: strings.NewReader("0123456789"), N: tc.n, Cut: func() { cuts++ }, Continue: tc.cont}
			got, err := io.ReadAll(r)
			if err != nil || string(got) != tc.want || (cuts > 0) != tc.wantCuts {
				t.Errorf("read %q, %v with %d cuts; want %q, cut %v", got, err, cuts, tc.want, tc.wantCuts)
			}
		})
	}
}

func TestFileContainsAcrossChunks(t *testing.T) {
	needle := []byte("0123456789abcdef")
	tests := []struct {
		name string
		at   int // -1: nowhere
	}{
		{"absent", -1},
		{"at the start", 0},
		{"across the first chunk's end", 4<<20 - 8},
		{"at the second chunk's start", 4 << 20},
		{"near the end", 9<<20 + 3},
		{"at the very end", 10<<20 - 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, 10<<20)
			if tc.at >= 0 {
				copy(data[tc.at:], needle)
			}
			p := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := FileContains(p, needle)
			if want := tc.at >= 0; got != want || err != nil {
				t.Errorf("FileContains = %v, %v; want %v, nil", got, err, want)
			}
		})
	}
	if _, err := FileContains(filepath.Join(t.TempDir(), "missing"), needle); err == nil {
		t.Errorf("FileContains of a missing file: no error")
	}
}

func TestFileSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := FileSize(t, p); got != 5 {
		t.Errorf("FileSize = %d, want 5", got)
	}
}
