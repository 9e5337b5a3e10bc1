package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/sshtest"
)

// fleetHost is a loopback sshd whose sessions see a /nix, /run/nixos-via
// and /var/lib of their own (bind mounts in sshd's mount namespace): a
// host with an empty store and no system yet, whose profile, log and
// deploy state stay in root.
type fleetHost struct {
	root string
	srv  *sshtest.Server
}

func newFleetHost(t *testing.T) fleetHost {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"nix", "run", "varlib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv := sshtest.Start(t, sshtest.Options{Binds: map[string]string{
		"/nix": filepath.Join(root, "nix"), "/run/nixos-via": filepath.Join(root, "run"), "/var/lib": filepath.Join(root, "varlib")}})
	return fleetHost{root: root, srv: srv}
}

// node is the host as a deploy.nodes entry, shaped as deploy-rs reads it.
func (h fleetHost) node(name, system string) string {
	return fmt.Sprintf(`%s = { hostname = "127.0.0.1"; sshUser = "root";
      sshOpts = [ "-p" "%d" "-i" %q "-o" "UserKnownHostsFile=%s" ];
      profiles.system = { user = "root"; path = %s; }; };`, name, h.srv.Port, h.srv.ClientKey, h.srv.KnownHosts, system)
}

// TestDeployFleetFromFlake: one `nixos-via deploy --flake REF` run over the
// fleet the flake declares (deploy-rs's deploy.nodes), two loopback hosts
// with a system each; one system's switch fails. The other host still ends
// on its new system, the summary shows both, and the exit code is the
// failed host's.
func TestDeployFleetFromFlake(t *testing.T) {
	sshtest.Need(t)
	nixtest.Require(t)
	agent := filepath.Join(t.TempDir(), "nixos-via")
	build := exec.Command("go", "build", "-o", agent, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	good, bad := newFleetHost(t), newFleetHost(t)
	dir := t.TempDir()
	flake := fmt.Sprintf(`{ outputs = { self }: let
    # A system as deploy needs one: bin/switch-to-configuration (logging its
    # action in the host's /nix, exiting with code) and a nix-store.
    sys = name: code: derivation { name = "nixos-system-${name}"; system = %q; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
      args = [ "-c" ''
        mkdir -p $out/bin $out/sw/bin
        ln -s /usr/bin/nix-store $out/sw/bin/nix-store
        printf '#!/bin/sh\necho "%s $1" >> /nix/stc.log\nexit %s\n' ${name} ${code} > $out/bin/switch-to-configuration
        chmod +x $out/bin/switch-to-configuration
      '' ]; };
  in {
    deploy.nodes = {
      %s
      %s
    };
  }; }`, nixtest.System(), "%s", "%s", good.node("good", `sys "good" "0"`), bad.node("bad", `sys "bad" "3"`))
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, nil, "deploy", "--flake", "path:"+dir, "--agent", agent,
		"--option", "substituters", "", "--option", "sandbox", "false", "--confirm-timeout", "10s")
	if code != ExitRolledBack {
		t.Errorf("exit %d, want %d (the failed host rolled back)\n%s", code, ExitRolledBack, stderr)
	}
	for name, want := range map[string]string{"good": "ok", "bad": `failed .*rolled back to the previous generation: switch-to-configuration switch failed \(exit 3\)`} {
		if !regexp.MustCompile(`(?m)^` + name + `\s+` + want + `\s`).MatchString(stderr) {
			t.Errorf("summary has no %q row for %s\n%s", want, name, stderr)
		}
	}
	// The bad host had no system before: rolled back, it has no profile.
	for _, tc := range []struct {
		h      fleetHost
		log    string
		system string
	}{
		{good, "good switch", "-nixos-system-good"},
		{bad, "bad switch", ""},
	} {
		log, _ := os.ReadFile(filepath.Join(tc.h.root, "nix/stc.log"))
		if !strings.HasPrefix(string(log), tc.log+"\n") {
			t.Errorf("host's switches %q, want %q first", log, tc.log)
		}
		top, _ := filepath.EvalSymlinks(filepath.Join(tc.h.root, "nix/var/nix/profiles/system"))
		if (tc.system == "") != (top == "") || !strings.HasSuffix(top, tc.system) {
			t.Errorf("host's system profile is %q, want %s", top, tc.system)
		}
	}
}
