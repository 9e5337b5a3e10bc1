package sequence

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/hwconfig"
	"github.com/nixos-via/nixos-via/internal/phase"
)

func TestPlanValidateInstall(t *testing.T) {
	sp := &StorePaths{Disko: "/a", System: "/b"}
	tests := []struct {
		name              string
		plan              Plan
		vmTest, modeGiven bool
		wantErr           string // "" for none
	}{
		{"flake and host", Plan{Flake: ".#x", Host: "root@h"}, false, false, ""},
		{"store paths and host", Plan{StorePaths: sp, Host: "h"}, false, false, ""},
		{"kexec alone needs no system", Plan{Phases: []string{phase.Kexec}, Host: "h"}, false, false, ""},
		{"vm test needs no host", Plan{Flake: ".#x"}, true, false, ""},
		{"Validate first", Plan{Flake: ".#x", Host: "h", BuildOn: "cloud"}, false, false, `--build-on "cloud"`},
		{"store paths and disko mode", Plan{StorePaths: sp, Host: "h"}, false, true, "--store-paths cannot be combined with --disko-mode or --vm-test"},
		{"store paths and vm test", Plan{StorePaths: sp}, true, false, "--store-paths cannot be combined with --disko-mode or --vm-test"},
		{"vm test without flake", Plan{}, true, false, "--vm-test needs --flake"},
		{"vm test and remote build", Plan{Flake: ".#x", BuildOn: BuildOnRemote}, true, false, "--vm-test cannot be combined with remote builds"},
		{"vm test and extra files", Plan{Flake: ".#x", ExtraFiles: "/x"}, true, false, "--vm-test cannot be combined with remote builds, --extra-files"},
		{"vm test and hardware config", Plan{Flake: ".#x", HardwareConfig: &hwconfig.Options{Tool: "nixos-facter", Path: "f"}}, true, false, "--generate-hardware-config"},
		{"nothing to install", Plan{Host: "h"}, false, false, "give --flake REF#NAME or --store-paths DISKO SYSTEM"},
		{"no host", Plan{Flake: ".#x"}, false, false, "no host given: nixos-via [flags] [user@]host"},
		{"bad host", Plan{Flake: ".#x", Host: "root@h:99999"}, false, false, "host: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.plan
			err := p.ValidateInstall(tc.vmTest, tc.modeGiven)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateInstall() = %v, want nil", err)
				}
				return
			}
			var ue *phase.UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ValidateInstall() = %v, want a usage error containing %q", err, tc.wantErr)
			}
		})
	}
}
