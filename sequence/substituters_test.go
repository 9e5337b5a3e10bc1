package sequence

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// A flake whose configuration "h" sets nix.settings.substituters and whose
// "bare" has no nix settings at all (as the VM tests' configurations).
const substitutersFlake = `{
  outputs = { self }: {
    nixosConfigurations.h.config.nix.settings.substituters = [ "http://127.0.0.1:2" "http://127.0.0.1:1" ];
    nixosConfigurations.bare.config = { };
  };
}`

func TestSubstituters(t *testing.T) {
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skipf("nix not installed: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(substitutersFlake), 0o644); err != nil {
		t.Fatal(err)
	}
	local := []string{"--option", "substituters", "http://127.0.0.1:1/ file:///srv/cache"}
	tests := []struct {
		name    string
		args    []string
		config  string
		machine bool
		want    []string
		info    int // info events (the skipped file:// cache)
	}{
		{"local and machine", local, "h", true, []string{"http://127.0.0.1:1/", "http://127.0.0.1:2"}, 1},
		{"local only", local, "h", false, []string{"http://127.0.0.1:1/"}, 1},
		{"configuration without nix settings", local, "bare", true, []string{"http://127.0.0.1:1/"}, 1},
		{"none", []string{"--option", "substituters", ""}, "bare", true, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []event.Event
			p := &Plan{Nix: nix.CLI{Args: tt.args}, FlakeRef: "path:" + dir, FlakeAttr: `nixosConfigurations."` + tt.config + `".config`,
				Substitute: true, MachineSubstituters: tt.machine}
			r := &run{p: p, sink: event.Func(func(e event.Event) { events = append(events, e) })}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got := r.substituters(ctx)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("caches %q, want %q", got, tt.want)
			}
			if len(events) != tt.info {
				t.Errorf("events %+v, want %d info", events, tt.info)
			}
		})
	}
}
