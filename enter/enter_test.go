package enter

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// TestRefusals: what cannot be entered is refused before anything is
// mounted: a relative or missing directory, this machine's root, a root
// without etc/NIXOS (as nixos-enter refuses it), --boot with a command or
// without systemd-nspawn, and a user who is not root.
func TestRefusals(t *testing.T) {
	nixos := t.TempDir()
	os.MkdirAll(filepath.Join(nixos, "etc"), 0o755)
	os.WriteFile(filepath.Join(nixos, "etc/NIXOS"), nil, 0o644)
	plain := t.TempDir()
	_, nspawnErr := exec.LookPath("systemd-nspawn")
	root := func() int { return 0 }
	for _, tc := range []struct {
		name    string
		opts    Options
		refusal bool // else a usage error
		want    string
	}{
		{"relative", Options{Root: "mnt", euid: root}, false, `enter: directory "mnt": want an absolute path`},
		{"this machine's root", Options{Root: "/", euid: root}, false, "enter: directory /: this machine's own root"},
		{"missing", Options{Root: filepath.Join(plain, "x"), euid: root}, false, "enter: " + filepath.Join(plain, "x") + " is not a directory"},
		{"not NixOS", Options{Root: plain, euid: root}, false, "enter: " + plain + " is not a NixOS installation (it has no etc/NIXOS"},
		{"boot with a command", Options{Root: nixos, Boot: true, Command: []string{"true"}, euid: root}, false, "enter: --boot boots the system's init; it takes no command"},
		{"not root", Options{Root: nixos, euid: func() int { return 1000 }}, true, "pre-flight root: enter needs root (run it with sudo)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, Run(tc.opts), tc.refusal, tc.want)
		})
	}
	t.Run("boot without systemd-nspawn", func(t *testing.T) {
		if nspawnErr == nil {
			t.Skip("this machine has systemd-nspawn")
		}
		checkErr(t, Run(Options{Root: nixos, Boot: true, euid: root}), true,
			"pre-flight systemd-nspawn: enter --boot needs systemd-nspawn, which this machine lacks (Debian: apt-get install systemd-container)")
	})
}

func checkErr(t *testing.T, err error, refusal bool, want string) {
	t.Helper()
	_, isRefusal := err.(*phase.Refusal)
	_, isUsage := err.(*phase.UsageError)
	switch {
	case err == nil || !strings.HasPrefix(err.Error(), want):
		t.Errorf("Run = %v, want an error starting %q", err, want)
	case refusal && !isRefusal:
		t.Errorf("Run = %T, want a *phase.Refusal", err)
	case !refusal && !isUsage:
		t.Errorf("Run = %T, want a *phase.UsageError", err)
	}
}

// TestInRoot: a path's symlinks resolve inside the root, absolute ones
// from the root's top, relative ones from their directory, and a loop
// gives up.
func TestInRoot(t *testing.T) {
	r := t.TempDir()
	os.MkdirAll(filepath.Join(r, "nix/store/abc-sys/sw/bin"), 0o755)
	os.WriteFile(filepath.Join(r, "nix/store/abc-sys/sw/bin/bash"), nil, 0o755)
	os.MkdirAll(filepath.Join(r, "nix/var/nix/profiles"), 0o755)
	os.Symlink("/nix/store/abc-sys", filepath.Join(r, "nix/var/nix/profiles/system-1-link"))
	os.Symlink("system-1-link", filepath.Join(r, "nix/var/nix/profiles/system"))
	os.Symlink("loop", filepath.Join(r, "loop"))
	for _, tc := range []struct {
		path   string
		want   string
		ok     bool
		isFile bool
	}{
		{"/nix/var/nix/profiles/system/sw/bin/bash", "/nix/store/abc-sys/sw/bin/bash", true, true},
		{"/nix/var/nix/profiles/system/sw/bin/../bin/bash", "/nix/store/abc-sys/sw/bin/bash", true, true},
		{"/nix/var/nix/profiles/system/sw/bin/zsh", "/nix/store/abc-sys/sw/bin/zsh", true, false},
		{"/nix/var/nix/profiles/system/sw", "/nix/store/abc-sys/sw", true, false},
		{"/loop/x", "", false, false},
	} {
		got, ok := inRoot(r, tc.path)
		if ok != tc.ok || ok && got != filepath.Join(r, tc.want) {
			t.Errorf("inRoot(%s) = %q, %v; want %q, %v", tc.path, got, ok, filepath.Join(r, tc.want), tc.ok)
		}
		if f := isFile(r, tc.path); f != tc.isFile {
			t.Errorf("isFile(%s) = %v, want %v", tc.path, f, tc.isFile)
		}
	}
}
