package testimg

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	tests := []struct {
		name string
		ages []time.Duration // of installer-0, installer-1, ...
		want []string        // the entries left
	}{
		{"all recent are kept", []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute},
			[]string{"installer-0", "installer-1", "installer-2", "installer-3", "installer-4"}},
		{"old beyond keep go", []time.Duration{time.Minute, 3 * time.Hour, 4 * time.Hour, 5 * time.Hour, 6 * time.Hour},
			[]string{"installer-0", "installer-1", "installer-2"}},
		{"recent ones beyond keep stay, old ones go", []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Hour},
			[]string{"installer-0", "installer-1", "installer-2", "installer-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for i, age := range tt.ages {
				e := filepath.Join(dir, "installer-"+string(rune('0'+i)))
				if err := os.Mkdir(e, 0o755); err != nil {
					t.Fatal(err)
				}
				mark := filepath.Join(e, ".complete")
				if err := os.WriteFile(mark, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				when := time.Now().Add(-age)
				if err := os.Chtimes(mark, when, when); err != nil {
					t.Fatal(err)
				}
			}
			os.Mkdir(filepath.Join(dir, "provider-x"), 0o755) // another kind: untouched
			prune(dir, "installer", 3)
			entries, _ := os.ReadDir(dir)
			var got []string
			for _, e := range entries {
				if e.Name() != "provider-x" {
					got = append(got, e.Name())
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("left %v, want %v", got, tt.want)
			}
		})
	}
}
