package connflags

import "testing"

func TestOneHost(t *testing.T) {
	tests := []struct {
		name, given string // given: --target-host
		pos         []string
		want        string // the destination, or the error
	}{
		{"positional", "", []string{"root@h"}, "root@h"},
		{"--target-host", "h", nil, "h"},
		{"none", "", nil, "want exactly one host, got []"},
		{"two", "", []string{"a", "b"}, `want exactly one host, got ["a" "b"]`},
		{"both", "h", []string{"h"}, `want exactly one host, got ["h"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Conn{}
			c.Destination = tc.given
			var got string
			if err := c.OneHost(tc.pos); err != nil {
				got = err.Error()
			} else {
				got = c.Destination
			}
			if got != tc.want {
				t.Errorf("OneHost(%q) with --target-host %q: got %q, want %q", tc.pos, tc.given, got, tc.want)
			}
		})
	}
}
