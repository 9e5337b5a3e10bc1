package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/deploy"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
)

// TestDeployUsage: bad deploy command lines stop with exit 2 and say why,
// before anything is built or dialled.
func TestDeployUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "--flake", ".#a", "--system", "/nix/store/x", "h"}, "give one of --flake REF#NAME and --system PATH"},
		{[]string{"deploy", "h"}, "give one of --flake REF#NAME and --system PATH"},
		{[]string{"deploy", "--system", "/nix/store/x"}, "no host given"},
		{[]string{"deploy", "--flake", ".", "web=h"}, "missing #NAME"},
		{[]string{"deploy", "--flake", ".#a", "--action", "reboot", "h"}, `--action "reboot": want switch, boot, test or dry-activate`},
		{[]string{"deploy", "--flake", ".#a", "--check", "true", "--no-magic-rollback", "h"}, "--check runs before the confirmation"},
		{[]string{"deploy", "--flake", ".#a", "--check", "true", "--action", "boot", "h"}, "--check runs before the confirmation"},
		{[]string{"deploy", "--flake", ".#a", "--confirm-timeout", "nope", "h"}, "confirm-timeout"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			code := Run(context.Background(), Env{Args: tc.args, Stdout: &out, Stderr: &out})
			if code != ExitUsage || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %d, output\n%s\nwant exit %d and %q", code, out.String(), ExitUsage, tc.want)
			}
		})
	}
}

// TestDeployExitCodes: a rollback is never 0, and a deploy that failed
// before anything changed is told from one that may have left the new
// system running.
func TestDeployExitCodes(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{fmt.Errorf("deploy: %w", &deploy.RolledBackError{Reason: "no confirmation within 30s"}), ExitRolledBack},
		{&deploy.Error{Err: errors.New("another deploy holds the lock")}, ExitDeployUnchanged},
		{&deploy.Error{Changed: true, Err: errors.New("switch failed")}, ExitDeployFailed},
	}
	for _, tc := range tests {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestDeployFleetUsage: without a host, deploy reads the flake's fleet
// (deploy-rs's deploy.nodes, colmena's colmenaHive); a flake without one, or
// a selection that matches none of its hosts, stops with exit 2 and says
// which hosts there are, before anything is built or dialled.
func TestDeployFleetUsage(t *testing.T) {
	nixtest.Require(t)
	flake := func(dir string) string { return "path:../../../fleet/flakehosts/testdata/" + dir }
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "--flake", flake("nofleet") + "#web"}, "declares no fleet (no deploy.nodes, no colmenaHive): give [user@]HOST"},
		{[]string{"deploy", "--flake", flake("colmena"), "--on", "@web,nope"}, `--on "nope": no host matches (hosts: db, web1, web2)`},
		{[]string{"deploy", "--flake", flake("deployrs") + "#nope"}, `"nope": no host matches (hosts: db, web)`},
		{[]string{"deploy", "--flake", flake("nohostname")}, "deploy.nodes.web: no hostname"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			code := Run(context.Background(), Env{Args: tc.args, Stdout: &out, Stderr: &out})
			if code != ExitUsage || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %d, output\n%s\nwant exit %d and %q", code, out.String(), ExitUsage, tc.want)
			}
		})
	}
}
