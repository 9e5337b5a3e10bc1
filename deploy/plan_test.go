package deploy

import (
	"reflect"
	"testing"
)

// TestDiff: the plan's package changes, as nvd diff shows them.
func TestDiff(t *testing.T) {
	s := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, "/nix/store/00000000000000000000000000000000-"+n)
		}
		return out
	}
	old := s("hello-2.10", "curl-8.5.0", "openssl-3.0.1", "etc", "nixos-system-a-25.05")
	new := s("hello-2.12.1", "jq-1.7", "openssl-3.0.1", "etc", "nixos-system-a-25.05", "python3-3.11.2", "python3-3.12.1")
	got := []string{}
	for _, c := range Diff(old, new) {
		got = append(got, c.String())
	}
	want := []string{"[R-] curl 8.5.0", "[U.] hello 2.10 -> 2.12.1", "[A+] jq 1.7", "[A+] python3 3.11.2, 3.12.1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %q, want %q", got, want)
	}
}
