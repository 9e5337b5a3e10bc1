package sequence

import (
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

func TestAlreadyInstalled(t *testing.T) {
	const top = "/nix/store/dg06y5zddc0bcd0vkyyrpbqiw1hyki0h-nixos-system-a-25.05"
	all := phase.All()
	tests := []struct {
		name      string
		phases    []string
		reinstall bool
		facts     target.Facts
		want      bool
	}{
		{"runs the system built", all, false, target.Facts{IsNixOS: true, CurrentSystem: top}, true},
		{"--reinstall", all, true, target.Facts{IsNixOS: true, CurrentSystem: top}, false},
		{"runs another system", all, false, target.Facts{IsNixOS: true, CurrentSystem: "/nix/store/0000000000000000000000000000000a-nixos-system-a-24.11"}, false},
		{"not NixOS", all, false, target.Facts{}, false},
		{"in an installer", all, false, target.Facts{IsNixOS: true, IsInstaller: true, CurrentSystem: top}, false},
		{"no disko phase", []string{phase.Kexec, phase.Install, phase.Reboot}, false, target.Facts{IsNixOS: true, CurrentSystem: top}, false},
		{"no kexec phase", []string{phase.Disko, phase.Install, phase.Reboot}, false, target.Facts{IsNixOS: true, CurrentSystem: top}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &run{p: &Plan{Phases: tt.phases, Reinstall: tt.reinstall}, facts: &tt.facts, toplevel: top}
			if got := r.alreadyInstalled(); got != tt.want {
				t.Errorf("alreadyInstalled() = %v, want %v", got, tt.want)
			}
		})
	}
}
