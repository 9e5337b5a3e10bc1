package tail

import (
	"strings"
	"sync"
	"testing"
)

func TestBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"nothing", 4, nil, ""},
		{"under max", 8, []string{"ab", "cd"}, "abcd"},
		{"exactly max", 4, []string{"ab", "cd"}, "abcd"},
		{"over max in pieces", 4, []string{"abc", "def", "g"}, "defg"},
		{"one write over max", 3, []string{"abcdefgh"}, "fgh"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.max)
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			if got := b.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBufferConcurrentWrites(t *testing.T) {
	b := New(100)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				b.Write([]byte("x"))
			}
		}()
	}
	wg.Wait()
	if got, want := b.String(), strings.Repeat("x", 100); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestLines(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\n", 3, "a\nb"},
		{"a\nb\nc\nd\n\n", 2, "c\nd"},
		{"a\nb\nc", 1, "c"},
	}
	for _, tc := range tests {
		if got := Lines(tc.s, tc.n); got != tc.want {
			t.Errorf("Lines(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
