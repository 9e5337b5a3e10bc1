package sequence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// testAgent is nixos-via built static, the agent the disko phase uploads.
func testAgent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sequence-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentPath = filepath.Join(dir, "nixos-via")
		cmd := exec.Command("go", "build", "-o", agentPath, "../cmd/nixos-via")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

// fakeDiskoFlake builds a stand-in for disko's system.build.diskoScript: a
// script in the store whose tool (a second store path, its closure) writes
// a marker into /run/nixos-via on the installer, and whose text names its
// disks in a destroy loop, as disko's does (never run here).
func fakeDiskoScript(t *testing.T, salt string) string {
	t.Helper()
	dir := t.TempDir()
	flake := fmt.Sprintf(`{ outputs = { self }: let
    drv = name: script: derivation { inherit name; system = %[1]q; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" script ]; };
    tool = drv "via-disko-tool-%[2]s" "mkdir -p $out/bin; printf '#!/bin/sh\necho \"disko tool %[2]s ran: $*\" > /run/nixos-via/disko-marker\n' > $out/bin/tool; chmod +x $out/bin/tool";
    script = drv "via-disko-%[2]s" ''
      cat > $out <<EOS
      #!/bin/sh
      set -e
      never() {
      for dev in '/dev/nixos-via-test-a' /dev/nixos-via-test-b;
      do
        \$BASH /nowhere/disk-deactivate "\$dev"
      done
      }
      echo partitioning the stand-in
      ${tool}/bin/tool mounted
      EOS
      chmod +x $out
    '';
  in { packages.%[1]q.default = script; }; }`, nixtest.System(), salt)
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outs, err := nixtest.CLI().Build(ctx, "path:"+dir+"#default")
	if err != nil {
		t.Fatal(err)
	}
	return outs[0]
}

// TestPrebuiltDisko: --store-paths' disko script on an installer without
// a /nix/store (our own: a loopback sshd with an empty /nix and
// /run/nixos-via of its own): its closure arrives in the installer's
// store, each path with its local NAR hash, the script runs and its tool
// from the closure writes the marker, the wipe names the script's disks,
// and a second run finds the agent and the closure there.
func TestPrebuiltDisko(t *testing.T) {
	nixtest.Require(t)
	sshtest.Need(t)
	script := fakeDiskoScript(t, fmt.Sprint(time.Now().UnixNano()))
	infos, err := nixtest.CLI().Closure(context.Background(), script)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("the stand-in's closure has %d paths, want 2", len(infos))
	}
	store, run := t.TempDir(), t.TempDir()
	s := sshtest.Start(t, sshtest.Options{OSRelease: installerOSRelease, Binds: map[string]string{"/nix": store, "/run/nixos-via": run}})
	plan := installPlan(s, t.TempDir(), "", "")
	plan.Phases, plan.Flake, plan.FlakeRef, plan.FlakeAttr = []string{phase.Disko}, "", "", ""
	plan.StorePaths = &StorePaths{Disko: script, System: "/nonexistent"}
	plan.Agent = testAgent(t)
	asked := 0
	plan.Confirm = func() error { asked++; return nil }

	for i, wantUpload := range []bool{true, false} {
		rec := &testutil.Recorder{}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		err := Run(ctx, plan, rec)
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		marker, err := os.ReadFile(filepath.Join(run, "disko-marker"))
		if got, want := strings.TrimSpace(string(marker)), "disko tool "; err != nil || !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "ran: mounted") {
			t.Errorf("run %d: marker %q (%v), want the tool from the closure to have run", i+1, got, err)
		}
		steps := strings.Join(rec.Messages(event.Step), "\n")
		infoLines := strings.Join(rec.Messages(event.Info), "\n")
		for _, w := range []string{"the disko phase will ERASE these disks", "running " + script} {
			if !strings.Contains(steps, w) {
				t.Errorf("run %d: steps do not say %q:\n%s", i+1, w, steps)
			}
		}
		for _, w := range []string{"/dev/nixos-via-test-a", "/dev/nixos-via-test-b", "partitioning the stand-in"} {
			if !strings.Contains(infoLines, w) {
				t.Errorf("run %d: info does not say %q:\n%s", i+1, w, infoLines)
			}
		}
		copied := fmt.Sprintf("(%d of 2 paths)", map[bool]int{true: 2, false: 0}[wantUpload])
		if !strings.Contains(steps, copied) {
			t.Errorf("run %d: steps do not say %q:\n%s", i+1, copied, steps)
		}
		if got := strings.Contains(steps, "uploading the agent"); got != wantUpload {
			t.Errorf("run %d: agent uploaded %v, want %v", i+1, got, wantUpload)
		}
	}
	if asked != 2 {
		t.Errorf("the wipe was asked about %d times in two runs, want 2", asked)
	}
	for _, info := range infos {
		got, err := nar.HashPath(filepath.Join(store, strings.TrimPrefix(info.Path, "/nix/")))
		if err != nil || got.Hash != info.NarHash {
			t.Errorf("%s on the installer: %v (%v), want %v", info.Path, got.Hash, err, info.NarHash)
		}
	}
	applied, _ := os.ReadFile(filepath.Join(run, "disko-applied"))
	if len(strings.TrimSpace(string(applied))) != 64 {
		t.Errorf("the applied script was not recorded: %q", applied)
	}
}

// TestPrebuiltDiskoRefusals: a disko script that is not an executable store
// file is a usage error before any connection (nothing listens on the
// plan's port), and a refused confirmation stops before the closure is
// copied.
func TestPrebuiltDiskoRefusals(t *testing.T) {
	nixtest.Require(t)
	script := fakeDiskoScript(t, "refusals")
	notStore := filepath.Join(t.TempDir(), "disko")
	os.WriteFile(notStore, []byte("#!/bin/sh\n"), 0o755)
	dirPath := filepath.Dir(filepath.Dir(script)) // /nix/store: not a store path
	cases := []struct{ name, disko, want string }{
		{"missing", "/nix/store/00000000000000000000000000000000-none", "no such file"},
		{"not in the store", notStore, "not a store path"},
		{"not a path", dirPath, "not a store path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := Plan{Host: "root@127.0.0.1:1", Phases: []string{phase.Disko}, Nix: nixtest.CLI(),
				StorePaths: &StorePaths{Disko: c.disko, System: "/nonexistent"}}
			rec := &testutil.Recorder{}
			err := Run(context.Background(), plan, rec)
			var usage *phase.UsageError
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want a usage error saying %q", err, c.want)
			}
			if steps := strings.Join(rec.Messages(event.Step), "\n"); strings.Contains(steps, "connecting") {
				t.Errorf("connected:\n%s", steps)
			}
		})
	}
	if _, err := diskorun.ReadPrebuilt(context.Background(), nixtest.CLI(), script); err != nil {
		t.Errorf("ReadPrebuilt(%s): %v, want the stand-in accepted", script, err)
	}
}
