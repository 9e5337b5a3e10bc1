package sequence

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
)

func TestPlanValidate(t *testing.T) {
	tests := []struct {
		name    string
		plan    Plan
		wantErr string // "" for none
		buildOn string // after Validate, when no error
		mode    string
	}{
		{"defaults", Plan{}, "", BuildOnAuto, "disko"},
		{"given words stay", Plan{BuildOn: BuildOnRemote, DiskoMode: "mount"}, "", BuildOnRemote, "mount"},
		{"bad build-on", Plan{BuildOn: "there"}, `--build-on "there": want auto, local or remote`, "", ""},
		{"bad disko mode", Plan{DiskoMode: "wipe"}, `--disko-mode "wipe": want disko, format or mount`, "", ""},
		{"ssh store", Plan{From: "ssh://cache"}, `--from "ssh://cache": not implemented yet`, "", ""},
		{"file cache", Plan{From: "file:///c"}, "", BuildOnAuto, "disko"},
		{"https cache", Plan{From: "https://c"}, "", BuildOnAuto, "disko"},
		{"flake and store paths", Plan{Flake: ".#x", StorePaths: &StorePaths{Disko: "/a", System: "/b"}}, "--flake and --store-paths exclude each other", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.plan
			err := p.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if p.BuildOn != tc.buildOn || p.DiskoMode != tc.mode {
					t.Errorf("BuildOn, DiskoMode = %q, %q, want %q, %q", p.BuildOn, p.DiskoMode, tc.buildOn, tc.mode)
				}
				return
			}
			var ue *phase.UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate() = %v, want a usage error containing %q", err, tc.wantErr)
			}
		})
	}
}
