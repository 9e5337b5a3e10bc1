package cli

import (
	"context"
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

func newFleetHost(t *testing.T, authorizedKeys ...string) fleetHost {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"nix", "run", "varlib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv := sshtest.Start(t, sshtest.Options{AuthorizedKeys: authorizedKeys, Binds: map[string]string{
		"/nix": filepath.Join(root, "nix"), "/run/nixos-via": filepath.Join(root, "run"), "/var/lib": filepath.Join(root, "varlib")}})
	return fleetHost{root: root, srv: srv}
}

// node is the host as a deploy.nodes entry, shaped as deploy-rs reads it.
func (h fleetHost) node(name, system string) string {
	return fmt.Sprintf(`%s = { hostname = "127.0.0.1"; sshUser = "root";
      sshOpts = [ "-p" "%d" "-i" %q "-o" "UserKnownHostsFile=%s" ];
      profiles.system = { user = "root"; path = %s; }; };`, name, h.srv.Port, h.srv.ClientKey, h.srv.KnownHosts, system)
}

// fleetAgent builds the static nixos-via the hosts run.
func fleetAgent(t *testing.T) string {
	t.Helper()
	sshtest.Need(t)
	nixtest.Require(t)
	agent := filepath.Join(t.TempDir(), "nixos-via")
	build := exec.Command("go", "build", "-o", agent, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return agent
}

// fleetFlake writes a flake with outputs and sys NAME CODE, a system as
// deploy needs one: bin/switch-to-configuration (logging "NAME ACTION" in
// the host's /nix/stc.log, exiting with CODE) and a nix-store.
func fleetFlake(t *testing.T, outputs string) string {
	t.Helper()
	dir := t.TempDir()
	flake := fmt.Sprintf(`{ outputs = { self }: let
    sys = name: code: derivation { name = "nixos-system-${name}"; system = %q; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
      args = [ "-c" ''
        mkdir -p $out/bin $out/sw/bin
        ln -s /usr/bin/nix-store $out/sw/bin/nix-store
        printf '#!/bin/sh\necho "%%s $1" >> /nix/stc.log\nexit %%s\n' ${name} ${code} > $out/bin/switch-to-configuration
        chmod +x $out/bin/switch-to-configuration
      '' ]; };
  in { %s }; }`, nixtest.System(), outputs)
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return "path:" + dir
}

// switched says what the host's switches and system profile are.
func (h fleetHost) switched() (log, profile string) {
	b, _ := os.ReadFile(filepath.Join(h.root, "nix/stc.log"))
	profile, _ = filepath.EvalSymlinks(filepath.Join(h.root, "nix/var/nix/profiles/system"))
	return string(b), profile
}

// TestDeployOneSystem: with a single HOST or NAME= pairs, the one system
// (--system, or --flake REF#NAME) goes to every host given, as before
// flakes declared fleets.
func TestDeployOneSystem(t *testing.T) {
	agent := fleetAgent(t)
	ref := fleetFlake(t, `packages.`+nixtest.System()+`.default = sys "one" "0"; nixosConfigurations.one.config.system.build.toplevel = sys "one" "0";`)
	n := nixtest.CLI()
	n.Args = append(n.Args, "--option", "sandbox", "false")
	outs, err := n.Build(context.Background(), ref+"#default")
	if err != nil {
		t.Fatal(err)
	}
	top := outs[0]
	a := newFleetHost(t)
	b, c := newFleetHost(t, a.srv.ClientPub), newFleetHost(t, a.srv.ClientPub)
	common := []string{"deploy", "--agent", agent, "--option", "substituters", "", "--option", "sandbox", "false", "-i", a.srv.ClientKey}
	for _, tc := range []struct {
		name  string
		args  []string
		hosts []fleetHost
	}{
		{"single HOST, --system", []string{"--system", top, "-p", fmt.Sprint(a.srv.Port), "--ssh-option", "UserKnownHostsFile=" + a.srv.KnownHosts, "root@127.0.0.1"}, []fleetHost{a}},
		{"pairs, --flake REF#NAME", []string{"--flake", ref + "#one", "--ssh-option", "StrictHostKeyChecking=no",
			fmt.Sprintf("b=root@127.0.0.1:%d", b.srv.Port), fmt.Sprintf("c=root@127.0.0.1:%d", c.srv.Port)}, []fleetHost{b, c}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string(nil), common...), tc.args...)
			if code, _, stderr := runCLI(t, nil, args...); code != ExitOK {
				t.Fatalf("exit %d, want 0\n%s", code, stderr)
			}
			for _, h := range tc.hosts {
				if log, profile := h.switched(); log != "one switch\n" || profile != top {
					t.Errorf("host ended with switches %q, profile %q; want one switch to %s", log, profile, top)
				}
			}
		})
	}
}

// TestDeployFleetFromFlake: one `nixos-via deploy --flake REF` run over the
// fleet the flake declares (deploy-rs's deploy.nodes), two loopback hosts
// with a system each; one system's switch fails. The other host still ends
// on its new system, the summary shows both, and the exit code is the
// failed host's. The confirmation may take long on a loaded machine (CI runs
// VMs beside it: a 10 s timeout rolled the good host back), and a good
// host confirms at once, so the timeout is generous.
func TestDeployFleetFromFlake(t *testing.T) {
	agent := fleetAgent(t)
	good, bad := newFleetHost(t), newFleetHost(t)
	ref := fleetFlake(t, "deploy.nodes = { "+good.node("good", `sys "good" "0"`)+bad.node("bad", `sys "bad" "3"`)+" };")
	code, _, stderr := runCLI(t, nil, "deploy", "--flake", ref, "--agent", agent,
		"--option", "substituters", "", "--option", "sandbox", "false", "--confirm-timeout", "2m")
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
		log, top := tc.h.switched()
		if !strings.HasPrefix(log, tc.log+"\n") {
			t.Errorf("host's switches %q, want %q first", log, tc.log)
		}
		if (tc.system == "") != (top == "") || !strings.HasSuffix(top, tc.system) {
			t.Errorf("host's system profile is %q, want %s", top, tc.system)
		}
	}
}
