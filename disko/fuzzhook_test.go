package disko

import "testing"

// fuzzRender exercises everything derived from an accepted layout.
func fuzzRender(t *testing.T, l *Layout) {
	t.Helper()
	if _, err := l.ResolvedJSON(); err != nil {
		t.Fatalf("ResolvedJSON: %v", err)
	}
}
