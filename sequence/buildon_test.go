package sequence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// installerOSRelease makes a loopback sshd pass for an installer, so a run
// needs no kexec phase.
const installerOSRelease = "NAME=NixOS\nID=nixos\nVARIANT_ID=installer\n"

// systemFlake writes a flake whose configuration t says its pkgs.system
// is system and whose toplevel is a trivial derivation for it (no
// nix-store in it: a run that built it stops there, before connecting).
func systemFlake(t *testing.T, system string) string {
	t.Helper()
	dir := t.TempDir()
	flake := fmt.Sprintf(`{ outputs = { self }: { nixosConfigurations.t = {
    pkgs.system = %[1]q;
    config.system.build.toplevel = derivation { name = "via-buildon-top"; system = %[1]q; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
  }; }; }`, system)
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return "path:" + dir
}

// otherSystem is a system this machine's Nix cannot build for.
func otherSystem() string {
	if strings.HasPrefix(nixtest.System(), "aarch64") {
		return "x86_64-linux"
	}
	return "aarch64-linux"
}

// noNix starts a loopback installer whose sessions find no working nix:
// an empty, non-executable file is bind-mounted over /usr/bin/nix.
func noNix(t *testing.T) *sshtest.Server {
	t.Helper()
	sshtest.Need(t)
	empty := filepath.Join(t.TempDir(), "nix")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	binds := map[string]string{}
	for _, p := range []string{"/usr/bin/nix", "/usr/local/bin/nix", "/run/current-system/sw/bin/nix"} {
		if _, err := os.Stat(p); err == nil {
			binds[p] = empty
		}
	}
	return sshtest.Start(t, sshtest.Options{OSRelease: installerOSRelease, Binds: binds})
}

func installPlan(s *sshtest.Server, home, ref, buildOn string) Plan {
	return Plan{
		Host: "root@" + s.Addr, Home: home, ConnectTimeout: 10 * time.Second, Phases: []string{phase.Install},
		Target: target.Options{Destination: "root@" + s.Addr, IdentityFiles: []string{s.ClientKey}, SSHConfigFile: "none",
			KnownHostsFiles: []string{s.KnownHosts}, ConnectTimeout: 10 * time.Second},
		Nix: nixtest.CLI(), Flake: ref + "#t", FlakeRef: ref, FlakeAttr: `nixosConfigurations."t".config`,
		BuildOn: buildOn,
	}
}

// TestBuildOn: where the system is built and what stops a remote build,
// before anything on the installer's disks is touched. A loopback
// installer without Nix is refused with the alternatives; one with this
// machine's Nix gets the not-implemented refusal; auto builds here for a
// system this machine builds and goes remote for one it cannot.
func TestBuildOn(t *testing.T) {
	nixtest.Require(t)
	sshtest.Need(t)
	withNix := sshtest.Start(t, sshtest.Options{OSRelease: installerOSRelease})
	without := noNix(t)
	cases := []struct {
		name, system, buildOn string
		server                *sshtest.Server
		want                  []string // in the error
		usage, refusal        bool     // the error's kind
		built, connected      bool
	}{
		{name: "remote without nix", system: nixtest.System(), buildOn: "remote", server: without, refusal: true, connected: true,
			want: []string{"has no Nix", "nothing on its disks was touched", "--build-on local", "--store-paths", "--kexec"}},
		{name: "remote with nix", system: nixtest.System(), buildOn: "remote", server: withNix, usage: true, connected: true,
			want: []string{"not implemented yet", "nix (Nix)", "--build-on local"}},
		{name: "auto, a system built elsewhere", system: otherSystem(), buildOn: "auto", server: without, refusal: true, connected: true,
			want: []string{"has no Nix"}},
		{name: "auto, this machine's system", system: nixtest.System(), buildOn: "auto", server: without, built: true,
			want: []string{"no nix-store"}},
		{name: "local, a system built elsewhere", system: otherSystem(), buildOn: "local", server: without, built: true,
			want: []string{"build the system"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := systemFlake(t, c.system)
			rec := &testutil.Recorder{}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := Run(ctx, installPlan(c.server, t.TempDir(), ref, c.buildOn), rec)
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			var usage *phase.UsageError
			var refusal *phase.Refusal
			if got := errors.As(err, &usage); got != c.usage {
				t.Errorf("usage error: got %v, want %v (%v)", got, c.usage, err)
			}
			if got := errors.As(err, &refusal); got != c.refusal {
				t.Errorf("refusal: got %v, want %v (%v)", got, c.refusal, err)
			}
			steps := strings.Join(rec.Messages(event.Step), "\n")
			if got := strings.Contains(steps, "building "); got != c.built {
				t.Errorf("built here: got %v, want %v; steps:\n%s", got, c.built, steps)
			}
			if got := strings.Contains(steps, "connecting to"); got != c.connected {
				t.Errorf("connected: got %v, want %v; steps:\n%s", got, c.connected, steps)
			}
		})
	}
}
