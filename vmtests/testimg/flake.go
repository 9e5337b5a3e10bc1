package testimg

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// FlakeDir is vmtests/flake, the test systems' flake.
func FlakeDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "flake"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// SnakeoilKey is a private copy (mode 0600, as ssh wants it) of the key
// every test system of vmtests/flake authorizes for root.
func SnakeoilKey(t testing.TB) string {
	t.Helper()
	priv, err := os.ReadFile(filepath.Join(FlakeDir(t), "keys", "snakeoil_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "snakeoil")
	if err := os.WriteFile(p, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
