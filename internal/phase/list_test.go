package phase

import (
	"errors"
	"slices"
	"testing"
)

func TestParseList(t *testing.T) {
	tests := []struct {
		in    string
		want  []string
		usage bool
	}{
		{in: "kexec,disko", want: []string{Kexec, Disko}},
		{in: " install , reboot ", want: []string{Install, Reboot}},
		{in: "disko,kexec,disko", want: []string{Disko, Kexec}},
		{in: "kexec,,", want: []string{Kexec}},
		{in: "", usage: true},
		{in: " , ", usage: true},
		{in: "kexec,format", usage: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseList(tc.in)
			var ue *UsageError
			if tc.usage {
				if !errors.As(err, &ue) {
					t.Fatalf("ParseList(%q) = %v, %v, want a usage error", tc.in, got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("ParseList(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
			}
		})
	}
}
