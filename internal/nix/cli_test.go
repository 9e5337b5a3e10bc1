package nix_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
)

func TestClosureOfRealBuild(t *testing.T) {
	top, infos := nixtest.Closure(t, "nix-closure")
	byName := map[string]nix.PathInfo{}
	for _, info := range infos {
		name := info.Path[len("/nix/store/")+33:]
		byName[name] = info
	}
	for _, name := range []string{"via-top-nix-closure", "via-mid-nix-closure", "via-leaf-nix-closure", "via-single-nix-closure", "note-nix-closure.txt", "via-blob-a-nix-closure", "via-blob-b-nix-closure"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("closure of %s lacks %s; got %d paths", top, name, len(infos))
		}
	}
	if len(infos) != 7 {
		t.Errorf("closure has %d paths, want 7", len(infos))
	}
	if refs := byName["via-top-nix-closure"].References; len(refs) != 6 {
		t.Errorf("top references %v, want mid, leaf, note, single and the blobs", refs)
	}
	if d := byName["via-mid-nix-closure"].Deriver; !strings.HasSuffix(d, "-via-mid-nix-closure.drv") {
		t.Errorf("mid deriver = %q, want its .drv", d)
	}
	if d := byName["note-nix-closure.txt"].Deriver; d != "" {
		t.Errorf("toFile deriver = %q, want none", d)
	}
	// Our NAR of each real store path hashes to what Nix registered.
	for _, info := range infos {
		res, err := nar.HashPath(info.Path)
		if err != nil {
			t.Fatal(err)
		}
		if res.Hash != info.NarHash || res.Size != info.NarSize {
			t.Errorf("%s: our NAR %s/%d bytes, Nix says %s/%d", info.Path, res.Hash, res.Size, info.NarHash, info.NarSize)
		}
	}
	// PathInfo without --recursive gives just the path.
	one, err := nixtest.CLI().PathInfo(context.Background(), top)
	if err != nil || len(one) != 1 || one[0].Path != top {
		t.Errorf("PathInfo(%s) = %+v, %v; want just it", top, one, err)
	}
}

func TestRegistrationMatchesDumpDB(t *testing.T) {
	_, infos := nixtest.Closure(t, "nix-closure")
	ours, err := nix.Registration(infos)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--dump-db"}
	for _, info := range infos {
		args = append(args, info.Path)
	}
	theirs, err := exec.Command("nix-store", args...).Output()
	if err != nil {
		t.Fatalf("nix-store --dump-db: %v", err)
	}
	if ours != string(theirs) {
		t.Errorf("registration differs from nix-store --dump-db:\n ours:\n%s\ntheirs:\n%s", ours, theirs)
	}
}

// TestRegistrationLoads restores the closure into an empty chroot store and
// has Nix load our registration; Nix then knows every path, its references
// and deriver, and verifies the contents against our narHash.
func TestRegistrationLoads(t *testing.T) {
	top, infos := nixtest.Closure(t, "nix-closure")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix/store"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		var buf bytes.Buffer
		if _, err := nar.Dump(&buf, info.Path); err != nil {
			t.Fatal(err)
		}
		if _, err := nar.Restore(&buf, filepath.Join(root, info.Path), nar.RestoreOptions{Canonical: true}); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := nix.Registration(infos)
	if err != nil {
		t.Fatal(err)
	}
	store := "local?root=" + root
	load := exec.Command("nix-store", "--store", store, "--load-db")
	load.Stdin = strings.NewReader(reg)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --load-db: %v: %s", err, out)
	}
	out, err := exec.Command("nix-store", "--store", store, "--query", "--requisites", top).Output()
	if err != nil {
		t.Fatalf("nix-store --query --requisites: %v", err)
	}
	if got := len(strings.Fields(string(out))); got != len(infos) {
		t.Errorf("loaded store knows %d requisites of top, want %d", got, len(infos))
	}
	for _, info := range infos {
		cmd := exec.Command("nix-store", "--store", store, "--verify-path", info.Path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nix-store --verify-path %s: %v: %s", info.Path, err, out)
		}
	}
	loaded, err := nix.CLI{Args: []string{"--store", store}}.Closure(context.Background(), top)
	if err != nil {
		t.Fatal(err)
	}
	for i := range infos {
		if loaded[i].Path != infos[i].Path || loaded[i].NarHash != infos[i].NarHash || loaded[i].Deriver != infos[i].Deriver {
			t.Errorf("loaded %+v, want %+v", loaded[i], infos[i])
		}
	}
}

func TestEvalAndBuildErrors(t *testing.T) {
	nixtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := nixtest.CLI()
	ref := nixtest.Flake(t, "nix-eval")
	var name string
	if err := cli.EvalInto(ctx, ref+"#packages."+nixtest.System()+".leaf.name", &name); err != nil {
		t.Fatal(err)
	}
	if name != "via-leaf-nix-eval" {
		t.Errorf("eval name = %q, want via-leaf-nix-eval", name)
	}
	_, err := cli.Build(ctx, ref+"#no-such-attr")
	if err == nil || !strings.Contains(err.Error(), "nix build") || !strings.Contains(err.Error(), "no-such-attr") {
		t.Errorf("build of a missing attribute: error = %v, want it to name the call and the attribute", err)
	}
	_, err = cli.PathInfo(ctx, "/nix/store/00000000000000000000000000000000-absent")
	if err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Errorf("path-info of an absent path: error = %v, want not valid", err)
	}
	cancelled, stop := context.WithCancel(ctx)
	stop()
	if _, err := cli.Eval(cancelled, ref+"#packages."+nixtest.System()+".leaf.name"); err == nil {
		t.Error("eval with a cancelled context succeeded")
	}
}
