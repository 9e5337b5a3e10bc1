package fleet

import "testing"

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
