package sequence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// A configuration "h" whose toplevel refers to a stand-in Nix package
// (nix-2.8.0 with bin/nix-store), @SALT@ making its paths this run's own.
const fromFlake = `{
  outputs = { self }: let
    drv = name: script: derivation { inherit name; system = "@SYSTEM@"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" script ]; };
    nixPkg = drv "nix-2.8.0" "mkdir -p $out/bin; echo '#!/bin/sh @SALT@' > $out/bin/nix-store; chmod +x $out/bin/nix-store";
    top = drv "nixos-system-h-@SALT@" "mkdir $out; ln -s ${nixPkg} $out/nix";
  in { nixosConfigurations.h.config.system.build.toplevel = top; };
}`

// --from a file:// cache: the system is evaluated, not built, its closure
// read from the cache (nothing lands in the local store), its nix-store
// found by name; ssh:// is refused as not implemented, touching nothing.
func TestSystemFromStore(t *testing.T) {
	nixtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	text := strings.NewReplacer("@SALT@", fmt.Sprint(time.Now().UnixNano()), "@SYSTEM@", nixtest.System()).Replace(fromFlake)
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := nixtest.CLI()
	ref, attr := "path:"+dir, `nixosConfigurations."h".config`
	outs, err := cli.Build(ctx, ref+"#"+attr+".system.build.toplevel")
	if err != nil {
		t.Fatal(err)
	}
	top := outs[0]
	want, err := cli.Closure(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Path < want[j].Path })
	var wantNS string
	for _, info := range want {
		if strings.HasSuffix(info.Path, "-nix-2.8.0") {
			wantNS = info.Path + "/bin/nix-store"
		}
	}
	cache := t.TempDir()
	nixCmd := func(args ...string) {
		t.Helper()
		args = append([]string{"--extra-experimental-features", "nix-command", "--option", "substituters", ""}, args...)
		if out, err := exec.CommandContext(ctx, "nix", args...).CombinedOutput(); err != nil {
			t.Fatalf("nix %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	nixCmd("copy", "--to", "file://"+cache, top)
	del := []string{"store", "delete"}
	for _, info := range want {
		del = append(del, info.Path)
	}
	nixCmd(del...)

	for _, tt := range []struct {
		name       string
		storePaths *StorePaths
	}{{"flake", nil}, {"store-paths", &StorePaths{System: top}}} {
		t.Run(tt.name, func(t *testing.T) {
			p := &Plan{Nix: cli, FlakeRef: ref, FlakeAttr: attr, StorePaths: tt.storePaths, From: "file://" + cache}
			r := &run{p: p, sink: event.Discard{}}
			if err := r.buildSystem(ctx); err != nil {
				t.Fatal(err)
			}
			if r.toplevel != top || !reflect.DeepEqual(r.closure, want) || r.source == nil {
				t.Errorf("toplevel %s, closure %v, source %v; want %s, %v and the cache", r.toplevel, r.closure, r.source, top, want)
			}
			if r.nixStore != wantNS || wantNS == "" {
				t.Errorf("nix-store %q, want %q", r.nixStore, wantNS)
			}
			for _, info := range want {
				if _, err := os.Lstat(info.Path); err == nil {
					t.Errorf("%s is in the local store", info.Path)
				}
			}
		})
	}
	t.Run("ssh", func(t *testing.T) {
		r := &run{p: &Plan{Nix: cli, StorePaths: &StorePaths{System: top}, From: "ssh://root@127.0.0.1"}, sink: event.Discard{}}
		var usage *phase.UsageError
		if err := r.buildSystem(ctx); !errors.As(err, &usage) || !strings.Contains(err.Error(), notImplementedMsg) {
			t.Errorf("got %v, want a usage error saying %q", err, notImplementedMsg)
		}
	})
}

func TestWithFromCache(t *testing.T) {
	local := []string{"http://127.0.0.1:1"}
	for _, tt := range []struct {
		from       string
		substitute bool
		want       []string
	}{
		{"http://127.0.0.1:2/", true, []string{"http://127.0.0.1:2/", "http://127.0.0.1:1"}},
		{"http://127.0.0.1:1/", true, []string{"http://127.0.0.1:1/"}},
		{"http://127.0.0.1:2", false, local},
		{"file:///srv/cache", true, local},
		{"", true, local},
	} {
		r := &run{p: &Plan{From: tt.from, Substitute: tt.substitute}}
		if got := r.withFromCache(local); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("--from %q substitute %v: caches %q, want %q", tt.from, tt.substitute, got, tt.want)
		}
	}
}

// --from needs no builder: --build-on auto settles on local without asking
// the local Nix, and --build-on remote is refused, touching nothing.
func TestDecideBuildOnFrom(t *testing.T) {
	for _, tt := range []struct {
		buildOn, want string
		usage         bool
	}{{"", BuildOnLocal, false}, {BuildOnAuto, BuildOnLocal, false}, {BuildOnLocal, BuildOnLocal, false}, {BuildOnRemote, BuildOnRemote, true}} {
		p := &Plan{From: "file:///srv/cache", BuildOn: tt.buildOn, Phases: []string{phase.Install}, FlakeRef: "path:/nonexistent", FlakeAttr: `nixosConfigurations."h".config`,
			Nix: nix.CLI{Nix: "/nonexistent/nix"}}
		r := &run{p: p, sink: event.Discard{}}
		err := r.decideBuildOn(context.Background())
		var usage *phase.UsageError
		if got := errors.As(err, &usage); got != tt.usage || p.BuildOn != tt.want {
			t.Errorf("--build-on %q: BuildOn %q, error %v; want %q, usage error %v", tt.buildOn, p.BuildOn, err, tt.want, tt.usage)
		}
	}
}
