package sequence

import (
	"errors"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
)

func TestParseFlake(t *testing.T) {
	tests := []struct {
		in, ref, attr string
		usage         bool
	}{
		{in: ".#web", ref: ".", attr: `nixosConfigurations."web".config`},
		{in: "#web", ref: ".", attr: `nixosConfigurations."web".config`},
		{in: "github:o/r#a.b", ref: "github:o/r", attr: `nixosConfigurations."a.b".config`},
		{in: "./x#nixosConfigurations.web.config", ref: "./x", attr: "nixosConfigurations.web.config"},
		{in: "./x#y#web", ref: "./x#y", attr: `nixosConfigurations."web".config`},
		{in: ".", usage: true},
		{in: ".#", usage: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			ref, attr, err := ParseFlake(tc.in)
			var ue *phase.UsageError
			if tc.usage {
				if !errors.As(err, &ue) {
					t.Fatalf("ParseFlake(%q) error = %v, want a usage error", tc.in, err)
				}
				return
			}
			if err != nil || ref != tc.ref || attr != tc.attr {
				t.Errorf("ParseFlake(%q) = %q, %q, %v, want %q, %q, nil", tc.in, ref, attr, err, tc.ref, tc.attr)
			}
		})
	}
}
