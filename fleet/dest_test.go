package fleet

import (
	"testing"

	"github.com/nixos-via/nixos-via/internal/target"
)

func TestDestination(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a=h", "h"},
		{"a=root@h", "root@h"},
		{"a=root@127.0.0.1:2222", "root@127.0.0.1:2222"},
		{"a=h:22", "h:22"},
	} {
		h, err := ParsePair(tc.in)
		if err != nil {
			t.Fatalf("ParsePair(%q): %v", tc.in, err)
		}
		if got := h.Destination(); got != tc.want {
			t.Errorf("ParsePair(%q).Destination() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParsePairs(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    int
		wantErr bool
	}{
		{[]string{"a=h", "b=h:2"}, 2, false},
		{[]string{"a=h", "a=g"}, 0, true},
		{[]string{"a=h", "h"}, 0, true},
	} {
		got, err := ParsePairs(tc.in)
		if (err != nil) != tc.wantErr || len(got) != tc.want {
			t.Errorf("ParsePairs(%q) = %d hosts, %v; want %d, err %v", tc.in, len(got), err, tc.want, tc.wantErr)
		}
	}
}

// TestPairPortBeatsSSHPort: a port in NAME=user@host:port is that host's,
// whatever --ssh-port says for the others; without one, --ssh-port holds.
func TestPairPortBeatsSSHPort(t *testing.T) {
	for _, tc := range []struct {
		pair     string
		flagPort int
		want     int
	}{
		{"a=root@h:2222", 23, 2222},
		{"a=root@h", 23, 23},
		{"a=h:2200", 0, 2200},
		{"v6=[::1]:2201", 23, 2201},
	} {
		h, err := ParsePair(tc.pair)
		if err != nil {
			t.Fatalf("ParsePair(%q): %v", tc.pair, err)
		}
		r, err := target.Options{Destination: h.Destination(), Port: tc.flagPort, SSHConfigFile: "none"}.Resolve(t.TempDir())
		if err != nil {
			t.Fatalf("Resolve(%q): %v", h.Destination(), err)
		}
		if r.Port != tc.want {
			t.Errorf("%s with --ssh-port %d: port %d, want %d", tc.pair, tc.flagPort, r.Port, tc.want)
		}
	}
}
