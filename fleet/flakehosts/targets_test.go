package flakehosts

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/sequence"
)

func TestTargets(t *testing.T) {
	tests := []struct {
		name      string
		flake     string
		dest      string
		pairs     []string
		on        string
		wantHosts []string // names
		wantAttr  string   // p.FlakeAttr after Targets
		wantErr   string   // "" for none; then a usage error
	}{
		{"one host: no fleet, flake parsed", ".#web", "root@h", nil, "", nil, `nixosConfigurations."web".config`, ""},
		{"pairs", "", "", []string{"a=h1", "b=root@h2:2222"}, "", []string{"a", "b"}, "", ""},
		{"pairs picked by --on", ".#web", "", []string{"a=h1", "b=h2"}, "b", []string{"b"}, `nixosConfigurations."web".config`, ""},
		{"bad pair", "", "", []string{"=h1"}, "", nil, "", `host "=h1": want NAME=[user@]host[:port]`},
		{"no match", "", "", []string{"a=h1"}, "zz", nil, "", `--on "zz": no host matches`},
		{"no host", "", "", nil, "", nil, "", "no host given"},
		{"flake without #NAME for one host", ".", "h", nil, "", nil, "", "missing #NAME"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := sequence.Plan{Flake: tc.flake}
			hosts, err := Targets(context.Background(), &p, tc.dest, tc.pairs, tc.on)
			if tc.wantErr != "" {
				var ue *phase.UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Targets() = %v, want a usage error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, h := range hosts {
				names = append(names, h.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.wantHosts, ",") || p.FlakeAttr != tc.wantAttr {
				t.Errorf("hosts %q, FlakeAttr %q; want %q, %q", names, p.FlakeAttr, tc.wantHosts, tc.wantAttr)
			}
		})
	}
}
