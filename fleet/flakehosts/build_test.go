package flakehosts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/deploy"
	"github.com/nixos-via/nixos-via/fleet"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/sequence"
)

// TestBuild: every host's own system is built from the flake (a deploy-rs
// profile path and a colmena toplevel), each once, and its closure read.
func TestBuild(t *testing.T) {
	nixtest.Require(t)
	dir := t.TempDir()
	salt := fmt.Sprint(time.Now().UnixNano())
	flake := fmt.Sprintf(`{ outputs = { self }: let
    top = name: derivation { name = "nixos-system-${name}-%[2]s"; system = %[1]q; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
      args = [ "-c" "mkdir -p $out/sw/bin; printf '#!/bin/sh\n' > $out/sw/bin/nix-store; echo ${name} > $out/name" ]; };
  in {
    deploy.nodes.a = { hostname = "a.example.org"; profiles.system = { user = "root"; path = top "a"; }; };
    colmenaHive = rec {
      __schema = "v0.5";
      nodes.b.config = { deployment = { targetHost = "b.example.org"; targetUser = "root"; targetPort = null; tags = [ ]; }; system.build.toplevel = top "b"; };
      deploymentConfig = builtins.mapAttrs (_: v: v.config.deployment) nodes;
    };
  }; }`, nixtest.System(), salt)
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := "path:" + dir
	n := nixtest.CLI()
	n.Args = append(n.Args, "--option", "sandbox", "false")
	hosts, err := Hosts(ctx, n, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 {
		t.Fatalf("hosts = %+v, want a and b", hosts)
	}
	var steps []string
	sink := event.Func(func(e event.Event) {
		if e.Kind == event.Step {
			steps = append(steps, e.Msg)
		}
	})
	systems, err := Build(ctx, sequence.Plan{Nix: n, Flake: ref}, append(hosts, hosts[0]), sink)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || len(systems) != 2 {
		t.Fatalf("Build: steps %q, %d systems; want one build of 2 systems", steps, len(systems))
	}
	for _, h := range hosts {
		s, ok := systems[h.System]
		if !ok {
			t.Fatalf("no system for %s (%s)", h.Name, h.System)
		}
		name, err := os.ReadFile(filepath.Join(s.Toplevel, "name"))
		if err != nil || string(name) != h.Name+"\n" {
			t.Errorf("%s: system %s says %q, %v; want its own", h.Name, s.Toplevel, name, err)
		}
		if len(s.Closure) != 1 || s.Closure[0].Path != s.Toplevel {
			t.Errorf("%s: closure %+v, want just %s", h.Name, s.Closure, s.Toplevel)
		}
	}
	// Hosts without a system of their own (pairs, a single HOST: none)
	// share the plan's one system, under "".
	top := systems[hosts[0].System].Toplevel
	for _, hs := range [][]fleet.Host{nil, {{Name: "p1"}, {Name: "p2"}}} {
		shared, err := Build(ctx, sequence.Plan{Nix: n, StorePaths: &sequence.StorePaths{System: top}}, hs, sink)
		if err != nil || len(shared) != 1 || shared[""].Toplevel != top {
			t.Errorf("Build(%d hosts without a system) = %+v, %v; want %s under \"\"", len(hs), shared, err, top)
		}
	}
	if d := (System{}).Deploy(deploy.Options{Toplevel: top}); d.Toplevel != top {
		t.Errorf("the zero System changed the deploy's toplevel to %q", d.Toplevel)
	}
}
