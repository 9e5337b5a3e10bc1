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
		{"ssh store", Plan{From: "ssh://root@cache:2222?ssh-key=/k"}, "", BuildOnAuto, "disko"},
		{"ssh-ng store", Plan{From: "ssh-ng://cache"}, "", BuildOnAuto, "disko"},
		{"ssh store port 0", Plan{From: "ssh://cache:0"}, `--from "ssh://cache:0": port "0": want 1 to 65535`, "", ""},
		{"ssh store unknown param", Plan{From: "ssh://cache?frob=1"}, `--from "ssh://cache?frob=1": store parameter "frob" is not supported`, "", ""},
		{"ssh store remote-store", Plan{From: "ssh://cache?remote-store=local"}, "remote-store is not supported", "", ""},
		{"unknown scheme", Plan{From: "s3://bucket"}, `--from "s3://bucket": want file://DIR`, "", ""},
		{"bad file cache", Plan{From: "file://relative"}, `want file:///ABSOLUTE/DIR`, "", ""},
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
