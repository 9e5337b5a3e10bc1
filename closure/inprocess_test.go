package closure

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// TestInProcess: Send into a directory of this machine through the
// in-process agent restores, checks and records every path as the agent
// does over SSH; once the records are gone (registration removes them),
// RecordRegistered makes the paths the Nix database has count as present
// again, so a re-run sends nothing, and a path registered with another
// narHash is sent again.
func TestInProcess(t *testing.T) {
	_, infos := nixtest.Closure(t, "in-process")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := t.TempDir()
	opts := SendOptions{Agent: InProcessAgent, Root: root, Jobs: 2, Sink: &testutil.Recorder{}}
	stats, err := Send(ctx, InProcess{Root: root}, infos, opts)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Sent != len(infos) || stats.Present != 0 {
		t.Errorf("first run stats %+v, want all %d paths sent", stats, len(infos))
	}
	checkReceived(t, root, infos)
	checkNoPartial(t, root, false)

	changed := append([]nix.PathInfo(nil), infos...)
	changed[0].NarHash = infos[1].NarHash // registered with another content
	for _, tc := range []struct {
		name       string
		registered []nix.PathInfo // what the Nix database has
		wantSent   int
	}{
		{"nothing registered", nil, len(infos)},
		{"all registered", infos, 0},
		{"one registered with another narHash", changed, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.RemoveAll(filepath.Join(root, "nix/var/nixos-via")); err != nil {
				t.Fatal(err)
			}
			if err := RecordRegistered(root, tc.registered); err != nil {
				t.Fatal(err)
			}
			stats, err := Send(ctx, InProcess{Root: root}, infos, opts)
			if err != nil {
				t.Fatal(err)
			}
			if stats.Sent != tc.wantSent || stats.Present != len(infos)-tc.wantSent {
				t.Errorf("stats %+v, want %d sent and the rest present", stats, tc.wantSent)
			}
			checkNoPartial(t, root, false)
		})
	}
}

// TestInProcessRefusesOtherCommands: the in-process runner runs the agent's
// verbs for its own root only.
func TestInProcessRefusesOtherCommands(t *testing.T) {
	p := InProcess{Root: "/tmp/x"}
	for _, cmd := range []string{
		"rm -rf /",
		"nixos-via agent receive --root /tmp/y",
		"nixos-via agent evil --root /tmp/x",
		"/run/nixos-via/nixos-via agent receive --root /tmp/x",
	} {
		err := p.Run(context.Background(), cmd, strings.NewReader(""), nil, nil)
		if err == nil || !strings.Contains(err.Error(), "not an agent command") {
			t.Errorf("Run(%q) = %v, want it refused as not an agent command", cmd, err)
		}
	}
}
