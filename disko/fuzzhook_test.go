package disko

import "testing"

// fuzzRender exercises everything derived from an accepted layout: it
// must render or refuse with an error, never panic.
func fuzzRender(t *testing.T, l *Layout) {
	t.Helper()
	if _, err := l.ResolvedJSON(); err != nil {
		t.Fatalf("ResolvedJSON: %v", err)
	}
	if _, err := l.NixOSJSON(); err != nil {
		t.Fatalf("NixOSJSON: %v", err)
	}
	for _, m := range []Mode{ModeDestroyFormatMount, ModeFormat, ModeMount, ModeUnmount, ModeDestroy} {
		_, _ = l.Script(m, RenderOptions{})
	}
	_ = l.WipeTargets()
}
