package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/cmd/nixos-via/cli"
)

// checkDeploys deploys to the efi-ext4 system just installed on m through
// the real CLI (no reboot, the same VM):
//   - efi-ext4-next, given as --system: exit 0; it runs (hostname, its
//     /run/current-system) as generation 2, generation 1 keeps its boot
//     entry and generation 2 is the default; sshd, whose configuration
//     changed, was restarted (a new listener) while a session opened
//     before the deploy stays up;
//   - efi-ext4 with --action dry-activate: exit 0, says what would change,
//     changes nothing;
//   - efi-ext4-nokey (no authorized key for root: our login breaks), as
//     --flake: exit 10 (rolled back) after the confirm timeout; the host
//     answers a new login and runs generation 2 again;
//   - efi-ext4 with --check false: exit 10, generation 2 still runs.
func checkDeploys(t *testing.T, ctx context.Context, w *world, m *machine) {
	t.Helper()
	deploy := func(extra ...string) (int, string) {
		args := []string{"deploy", "--agent", w.agent,
			"-i", w.keys.ClientKeyFile, "--ssh-option", "UserKnownHostsFile=" + m.knownHosts,
			"--option", "substituters", ""}
		args = append(args, extra...)
		return nixosVia(t, ctx, append(args, fmt.Sprintf("root@127.0.0.1:%d", m.port))...)
	}
	old := dialInstalled(t, ctx, w, m) // a session that must survive sshd's restart
	gen1 := run(t, ctx, old, "readlink -f /run/current-system")
	sshdBefore := run(t, ctx, old, "cat /run/sshd.pid")
	next := systemClosure(t, ctx, w, "efi-ext4-next")[0].Path

	code, out := deploy("--system", next)
	if code != 0 {
		t.Fatalf("deploy efi-ext4-next: exit %d, want 0\n%s\n--- console ---\n%s", code, out, m.v.ConsoleTail(40))
	}
	c := dialInstalled(t, ctx, w, m)
	for _, tc := range []struct{ what, cmd, want string }{
		{"running system", "readlink -f /run/current-system", next},
		{"hostname", "hostname", "efi-ext4-next"},
		{"generation 2", "readlink -f /nix/var/nix/profiles/system-2-link", next},
		{"profile", "readlink /nix/var/nix/profiles/system", "system-2-link"},
		{"boot entries", "ls /boot/loader/entries | tr '\\n' ' '", "nixos-generation-1.conf nixos-generation-2.conf"},
		{"generation 1's entry boots it", "grep -c 'init=" + gen1 + "/init' /boot/loader/entries/nixos-generation-1.conf", "1"},
		{"default boot entry", "grep default /boot/loader/loader.conf", "default nixos-generation-2.conf"},
		{"the booted system", "readlink -f /run/booted-system", gen1},
	} {
		if got := run(t, ctx, c, tc.cmd); got != tc.want {
			t.Errorf("after deploying efi-ext4-next: %s: %s = %q, want %q", tc.what, tc.cmd, got, tc.want)
		}
	}
	if got := run(t, ctx, c, "cat /run/sshd.pid"); got == sshdBefore {
		t.Errorf("sshd's pid is still %s: its configuration changed but it was not restarted", got)
	}
	if got, err := old.Output(ctx, "echo still here", nil); err != nil || strings.TrimSpace(string(got)) != "still here" {
		t.Errorf("the session opened before the deploy: %v (%q), want it to survive sshd's restart", err, got)
	}

	code, out = deploy("--system", gen1, "--action", "dry-activate")
	if code != 0 || !strings.Contains(out, "would change /etc/hostname") {
		t.Errorf("deploy --action dry-activate: exit %d, want 0 and \"would change /etc/hostname\"\n%s", code, out)
	}
	if got := run(t, ctx, c, "readlink -f /run/current-system; hostname"); got != next+"\nefi-ext4-next" {
		t.Errorf("after dry-activate: running system and hostname %q, want efi-ext4-next's unchanged", got)
	}

	rolledBack := func(what string, args ...string) {
		t.Helper()
		code, out := deploy(args...)
		if code != cli.ExitRolledBack {
			t.Errorf("%s: exit %d, want %d (rolled back)\n%s\n--- console ---\n%s", what, code, cli.ExitRolledBack, out, m.v.ConsoleTail(40))
		}
		c := dialInstalled(t, ctx, w, m) // a new login: rollback restored it
		if got := run(t, ctx, c, "readlink -f /run/current-system; hostname; readlink /nix/var/nix/profiles/system"); got != next+"\nefi-ext4-next\nsystem-2-link" {
			t.Errorf("%s: running system, hostname and profile %q, want generation 2 (efi-ext4-next) back", what, got)
		}
		if got := run(t, ctx, c, "ls /nix/var/nix/profiles/ | grep -c '^system-3-link$' || true"); got != "0" {
			t.Errorf("%s: system-3-link is still there after the rollback", what)
		}
	}
	rolledBack("deploy efi-ext4-nokey", "--flake", w.flake+"#efi-ext4-nokey", "--confirm-timeout", "20s")
	rolledBack("deploy --check false", "--system", gen1, "--check", "false")
}
