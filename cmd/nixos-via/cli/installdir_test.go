package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallToDirAndEnterCommandLines: the two subcommands' bad command
// lines are usage errors (exit 2) that touch nothing, --help lists their
// flags, a root without etc/NIXOS is refused as nixos-enter refuses it,
// and --boot without systemd-nspawn is a pre-flight refusal (exit 5).
func TestInstallToDirAndEnterCommandLines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	plain := t.TempDir()
	_, nspawnErr := exec.LookPath("systemd-nspawn")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     string // in stdout (exit 0) or stderr
	}{
		{"--help lists install-to-dir", []string{"--help"}, ExitOK, "nixos-via install-to-dir --flake REF#NAME DIR"},
		{"--help lists enter", []string{"--help"}, ExitOK, "nixos-via enter DIR [-- CMD]"},
		{"install-to-dir help", []string{"install-to-dir", "--help"}, ExitOK, "--extra-files DIR"},
		{"install-to-dir help lists --system", []string{"install-to-dir", "-h"}, ExitOK, "--system PATH"},
		{"install-to-dir without a dir", []string{"install-to-dir", "--flake", ".#x"}, ExitUsage, "nixos-via install-to-dir: want one directory"},
		{"install-to-dir with neither", []string{"install-to-dir", dir}, ExitUsage, "want either --flake REF#NAME or --system PATH"},
		{"install-to-dir with a bad --chown", []string{"install-to-dir", "--system", "/nix/store/x", dir, "--chown", "/home"}, ExitUsage, "--chown needs two arguments"},
		{"install-to-dir of a missing system", []string{"install-to-dir", "--system", filepath.Join(plain, "nope"), dir}, ExitUsage, "--system " + filepath.Join(plain, "nope")},
		{"enter help", []string{"enter", "--help"}, ExitOK, "--no-activate"},
		{"enter without a dir", []string{"enter"}, ExitUsage, "nixos-via enter: want DIR"},
		{"enter with a command but no --", []string{"enter", plain, "ls"}, ExitUsage, "want DIR, then -- and the command"},
		{"enter a root that is not NixOS", []string{"enter", plain, "--", "true"}, ExitUsage, "is not a NixOS installation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			out := stderr
			if tc.wantCode == ExitOK {
				out = stdout
			}
			if code != tc.wantCode || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, tc.wantCode, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("%s was created", dir)
			}
		})
	}
	t.Run("enter --boot without systemd-nspawn", func(t *testing.T) {
		if nspawnErr == nil {
			t.Skip("this machine has systemd-nspawn")
		}
		os.MkdirAll(filepath.Join(plain, "etc"), 0o755)
		os.WriteFile(filepath.Join(plain, "etc/NIXOS"), nil, 0o644)
		code, _, stderr := runCLI(t, nil, "enter", "--boot", plain)
		if code != ExitRefused || !strings.Contains(stderr, "apt-get install systemd-container") {
			t.Errorf("exit %d, stderr %q; want exit %d saying where systemd-nspawn comes from", code, stderr, ExitRefused)
		}
	})
}

// TestInstallToDirThenEnter drives both subcommands as a user would:
// install-to-dir of the test system (vmtests/flake's efi-ext4) into a
// directory, then enter it to read the version of the system that the
// activation made current; a second install-to-dir says everything was
// there already; a command that fails in it exits 1.
func TestInstallToDirThenEnter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix is not installed (Debian: apt-get install nix-bin)")
	}
	dir := filepath.Join(t.TempDir(), "root")
	t.Cleanup(func() { // should enter ever leak a mount, never remove through it
		exec.Command("sh", "-c", `grep -q " $0/" /proc/self/mountinfo && { umount -R -l "$0"/* 2>/dev/null; }; true`, dir).Run()
	})
	install := []string{"install-to-dir", "--flake", "../../../vmtests/flake#efi-ext4",
		"--option", "substituters", "", "--option", "sandbox", "false", dir}
	code, stdout, stderr := runCLI(t, nil, install...)
	if code != ExitOK {
		t.Fatalf("install-to-dir: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, install...)
	if code != ExitOK || !strings.Contains(stdout+stderr, "paths: all already there") {
		t.Errorf("install-to-dir again: exit %d, output\n%s%s\nwant every path already there", code, stdout, stderr)
	}
	// The same system, prebuilt (as nixos-install --system takes it).
	_, top, _ := strings.Cut(stdout+stderr, "installed ")
	top, _, _ = strings.Cut(top, " ")
	code, stdout, stderr = runCLI(t, nil, "install-to-dir", "--system", top, dir)
	if code != ExitOK || !strings.Contains(stdout+stderr, "paths: all already there") || strings.Contains(stdout+stderr, "building ") {
		t.Errorf("install-to-dir --system %s: exit %d, output\n%s%s\nwant nothing built and every path already there", top, code, stdout, stderr)
	}
	// The bootloader step runs only when asked, for real: the test
	// system's switch-to-configuration refuses a /boot that is no mounted
	// ESP (this machine's kernel has no vfat), and the install fails.
	before, _ := os.ReadFile("/proc/self/mountinfo")
	code, stdout, stderr = runCLI(t, nil, append([]string{"install-to-dir", "--bootloader"}, install[1:]...)...)
	if code != ExitInstall || !strings.Contains(stderr, "switch-to-configuration: /boot does not exist") {
		t.Errorf("install-to-dir --bootloader: exit %d, output\n%s%s\nwant exit %d from switch-to-configuration boot's refusal", code, stdout, stderr, ExitInstall)
	}
	if after, _ := os.ReadFile("/proc/self/mountinfo"); string(after) != string(before) {
		t.Errorf("this machine's mounts changed in the bootloader step:\n%s\nwant:\n%s", after, before)
	}
	code, stdout, stderr = runCLI(t, nil, "enter", dir, "--", "cat", "/run/current-system/nixos-version")
	if want := "25.05.19700101.nixos-via-test"; code != ExitOK || stdout != want {
		t.Errorf("enter -- cat /run/current-system/nixos-version: exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, want)
	}
	code, _, stderr = runCLI(t, nil, "enter", "--no-activate", dir, "--", "sh", "-c", "exit 3")
	if code != 3 || stderr != "" {
		t.Errorf("enter -- sh -c 'exit 3': exit %d, stderr %q; want the command's status 3 and nothing added, as nixos-enter", code, stderr)
	}
}
