// Package nixtest builds small real closures in the local Nix store for
// tests, from derivations that need no nixpkgs (the builder is /bin/sh).
package nixtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// CLI is a nix.CLI that never tries a binary cache (tests run offline).
func CLI() nix.CLI {
	return nix.CLI{Args: []string{"--option", "substituters", ""}}
}

// Require skips t unless nix and nix-store are installed.
func Require(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"nix", "nix-store"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install nix-bin): %v", bin, err)
		}
	}
}

// System is the Nix system string of this machine.
func System() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"}[runtime.GOARCH]
	return arch + "-" + runtime.GOOS
}

// flakeTemplate: leaf (executable, symlink, empty dir, data), a
// content-addressed text file, mid (refers to leaf and the text), a single
// file, two blobs of random bytes (2 MiB and 1 MiB, incompressible), top
// (refers to all). @SALT@ makes distinct store paths per salt.
const flakeTemplate = `{
  outputs = { self }: let
    sh = "/bin/sh";
    note = builtins.toFile "note-@SALT@.txt" "a content-addressed source @SALT@\n";
    drv = name: script: derivation {
      inherit name; system = "@SYSTEM@"; builder = sh; PATH = "/usr/bin:/bin";
      args = [ "-c" script ];
    };
    leaf = drv "via-leaf-@SALT@" ''
      mkdir -p $out/bin $out/share/empty $out/share/deep/a/b/c/d/e/f
      printf '#!/bin/sh\necho leaf @SALT@\n' > $out/bin/leaf; chmod +x $out/bin/leaf
      ln -s ../bin/leaf $out/share/link
      ln -s /nowhere $out/share/dangling
      : > $out/share/empty-file
      echo deep > $out/share/deep/a/b/c/d/e/f/file
      i=0; while [ $i -lt 200 ]; do echo "line $i @SALT@" >> $out/share/data; i=$((i+1)); done
    '';
    mid = drv "via-mid-@SALT@" "mkdir $out; echo ${leaf} > $out/uses; ln -s ${leaf}/bin/leaf $out/tool; cp ${note} $out/note";
    single = drv "via-single-@SALT@" "echo single file ${mid} > $out";
    blob = n: kib: drv "via-blob-${n}-@SALT@" "mkdir $out; head -c ${toString kib}K /dev/urandom > $out/random";
    blobA = blob "a" 2048;
    blobB = blob "b" 1024;
    top = drv "via-top-@SALT@" "mkdir $out; echo ${mid} ${leaf} ${note} ${single} ${blobA} ${blobB} > $out/refs; ln -s ${single} $out/single";
  in { packages."@SYSTEM@" = { inherit leaf mid single blobA blobB top; default = top; }; };
}
`

// Flake writes the test flake for salt into a new temporary directory and
// returns its flake reference ("path:/dir").
func Flake(t testing.TB, salt string) string {
	t.Helper()
	dir := t.TempDir()
	text := strings.NewReplacer("@SALT@", salt, "@SYSTEM@", System()).Replace(flakeTemplate)
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return "path:" + dir
}

// Closure builds the test closure for salt into the local store and returns
// the top path and the closure's path infos (7 paths: top, mid, single, leaf,
// note, blob-a, blob-b; top and mid refer to others).
func Closure(t testing.TB, salt string) (top string, infos []nix.PathInfo) {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli := CLI()
	ref := Flake(t, salt)
	paths, err := cli.Build(ctx, fmt.Sprintf("%s#top", ref))
	if err != nil {
		t.Fatal(err)
	}
	infos, err = cli.Closure(ctx, paths[0])
	if err != nil {
		t.Fatal(err)
	}
	return paths[0], infos
}
