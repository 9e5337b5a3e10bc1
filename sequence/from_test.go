package sequence

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
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
// found by name; the same from ssh:// and ssh-ng:// (testSystemFromSSH); a
// bad --from URL is a usage error before anything runs.
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
	t.Run("bad-url", func(t *testing.T) {
		for _, from := range []string{"ssh://root@127.0.0.1:0", "ssh://root@127.0.0.1?remote-store=local", "ssh-ng://h?max-connections=2", "s3://bucket", "file://relative"} {
			r := &run{p: &Plan{Nix: nix.CLI{Nix: "/nonexistent/nix"}, FlakeRef: ref, FlakeAttr: attr, From: from}, sink: event.Discard{}}
			var usage *phase.UsageError
			if err := r.buildSystem(ctx); !errors.As(err, &usage) || !strings.Contains(err.Error(), "--from") {
				t.Errorf("--from %s: got %v, want a usage error naming --from", from, err)
			}
		}
	})
	t.Run("ssh", func(t *testing.T) { testSystemFromSSH(ctx, t, cache, top, want, wantNS) })
}

// --from ssh:// and ssh-ng://: a loopback sshd whose /nix is a Nix store
// of its own holding the system (this machine's store does not), reached
// with the URL's port, ssh-key and base64-ssh-public-host-key alone (no
// ssh_config, no known_hosts): the system's closure is read there, its
// NARs come from there with their registered hashes, and nothing lands
// in the local store. A bad URL stops the run before any connection.
func testSystemFromSSH(ctx context.Context, t *testing.T, cache, top string, want []nix.PathInfo, wantNS string) {
	sshtest.Need(t)
	store := t.TempDir()
	for _, info := range want {
		if _, err := os.Lstat(info.Path); err == nil {
			t.Fatalf("%s is in the local store before the test", info.Path)
		}
	}
	copyToStore(ctx, t, cache, top, store)
	s := sshtest.Start(t, sshtest.Options{Binds: map[string]string{"/nix": filepath.Join(store, "nix")}})
	hostKey := base64.StdEncoding.EncodeToString(ssh.MarshalAuthorizedKey(s.HostKey))
	for _, scheme := range []string{"ssh", "ssh-ng"} {
		t.Run(scheme, func(t *testing.T) {
			from := fmt.Sprintf("%s://root@%s?ssh-key=%s&base64-ssh-public-host-key=%s", scheme, s.Addr, url.QueryEscape(s.ClientKey), url.QueryEscape(hostKey))
			p := &Plan{Home: t.TempDir(), ConnectTimeout: 10 * time.Second, Target: target.Options{SSHConfigFile: "none"},
				StorePaths: &StorePaths{System: top}, From: from}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			r := &run{p: p, sink: event.Discard{}}
			err := r.buildSystem(ctx)
			if r.fromConn != nil {
				defer r.fromConn.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.toplevel != top || !reflect.DeepEqual(r.closure, want) || r.nixStore != wantNS {
				t.Errorf("toplevel %s, closure %v, nix-store %s; want %s, %v, %s", r.toplevel, r.closure, r.nixStore, top, want, wantNS)
			}
			for _, info := range want {
				res, err := r.source.NAR(ctx, info, io.Discard)
				if err != nil || res.Hash != info.NarHash || res.Size != info.NarSize {
					t.Errorf("%s from %s: %v/%d (%v), want %v/%d", info.Path, scheme, res.Hash, res.Size, err, info.NarHash, info.NarSize)
				}
				if _, err := os.Lstat(info.Path); err == nil {
					t.Errorf("%s landed in the local store", info.Path)
				}
			}
		})
	}
	before := strings.Count(s.Log(), "Accepted publickey")
	for _, from := range []string{
		fmt.Sprintf("ssh://root@%s?ssh-key=%s&remote-store=local", s.Addr, s.ClientKey),
		fmt.Sprintf("ssh://root@%s?ssh-key=%s&frobnicate=1", s.Addr, s.ClientKey),
		fmt.Sprintf("ssh://root@127.0.0.1:99999?ssh-key=%s", s.ClientKey),
		fmt.Sprintf("sftp://root@%s", s.Addr),
	} {
		p := &Plan{Home: t.TempDir(), ConnectTimeout: 10 * time.Second, Target: target.Options{SSHConfigFile: "none"}, StorePaths: &StorePaths{System: top}, From: from}
		var usage *phase.UsageError
		if err := p.Validate(); !errors.As(err, &usage) || !strings.Contains(err.Error(), "--from") {
			t.Errorf("Validate --from %s: got %v, want a usage error naming --from", from, err)
		}
		r := &run{p: p, sink: event.Discard{}}
		if err := r.buildSystem(ctx); !errors.As(err, &usage) || r.fromConn != nil {
			t.Errorf("--from %s: got %v (connected: %v), want a usage error and no connection", from, err, r.fromConn != nil)
		}
	}
	if after := strings.Count(s.Log(), "Accepted publickey"); after != before {
		t.Errorf("the store host saw %d logins for bad --from URLs, want none", after-before)
	}
}

// copyToStore copies top's closure from the binary cache dir cache into
// a Nix store of its own under dir (dir/nix, as a host's /nix), leaving
// the local store alone.
func copyToStore(ctx context.Context, t *testing.T, cache, top, dir string) {
	t.Helper()
	args := []string{"--extra-experimental-features", "nix-command", "--option", "substituters", "", "copy", "--no-check-sigs",
		"--from", "file://" + cache, "--to", "local?root=" + dir, top}
	if out, err := exec.CommandContext(ctx, "nix", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix %s: %v\n%s", strings.Join(args, " "), err, out)
	}
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
