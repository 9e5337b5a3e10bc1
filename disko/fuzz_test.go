package disko

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse, seeded with the 22 shared
// cases: it must return a layout or an error, never panic, and a layout it
// accepts must render every mode and its NixOS view without panicking.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(casesDir, "*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(simpleDisk))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse(data)
		if err != nil {
			if l != nil {
				t.Fatalf("Parse returned both a layout and an error: %v", err)
			}
			return
		}
		fuzzRender(t, l)
	})
}
