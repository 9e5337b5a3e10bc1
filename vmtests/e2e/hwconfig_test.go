package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// gitFlakeCopy copies vmtests/flake into a fresh git work tree (files
// staged, nothing committed), as a user's flake repository: Nix sees only
// the files git knows about there.
func gitFlakeCopy(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := filepath.Join(t.TempDir(), "flake")
	if out, err := runCmd("cp", "-r", flakeDir(t), dir); err != nil {
		t.Fatalf("copy the flake: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(dir, "hardware-configuration.nix")) // never taken from the checkout
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}} {
		if out, err := runCmd("git", append([]string{"-C", dir}, args...)...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// TestInstallWithGeneratedHardwareConfig: --generate-hardware-config
// nixos-generate-config runs the tool in the installer after kexec, writes
// hardware-configuration.nix into the flake's git work tree (intent to
// add), and only then builds the system, whose configuration imports the
// file: the installed system boots with the kernel modules the file lists.
func TestInstallWithGeneratedHardwareConfig(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	m := w.boot(t, "hardware-config", 1, 512)
	dir := gitFlakeCopy(t)
	hwFile := filepath.Join(dir, "hardware-configuration.nix")
	gw := *w
	gw.flake = dir // a git flake, not path:
	out := mustSucceed(t, ctx, m, "", nil, gw.installArgs(m, "hardware-config", "--generate-hardware-config", "nixos-generate-config", hwFile)...)
	gen := strings.Index(out, "[hardware-config] running nixos-generate-config")
	kexecDone := strings.Index(out, "the installer answers with the host's own key")
	build := strings.Index(out, "[build] building")
	if kexecDone < 0 || gen < kexecDone || build < gen {
		t.Errorf("want kexec, then the hardware config, then the build; output:\n%s", out)
	}

	data, err := os.ReadFile(hwFile)
	if err != nil {
		t.Fatalf("the hardware config was not written: %v", err)
	}
	hw := string(data)
	for _, want := range []string{"(here: the nixos-via test fixture)", `nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";`} {
		if !strings.Contains(hw, want) {
			t.Errorf("%s lacks %q:\n%s", hwFile, want, hw)
		}
	}
	mods := regexp.MustCompile(`boot\.initrd\.availableKernelModules = \[ ([^\]]*)\]`).FindStringSubmatch(hw)
	if mods == nil || !strings.Contains(mods[1], `"virtio_blk"`) {
		t.Fatalf("%s: availableKernelModules = %q, want the installer's virtio_blk among them:\n%s", hwFile, mods, hw)
	}
	t.Logf("generated: boot.initrd.availableKernelModules = [ %s]", mods[1])
	if ls, _ := runCmd("git", "-C", dir, "ls-files", "hardware-configuration.nix"); strings.TrimSpace(ls) != "hardware-configuration.nix" {
		t.Errorf("git ls-files hardware-configuration.nix = %q, want it known (intent to add)", ls)
	}

	checkInstalled(t, ctx, w, m, "hardware-config", out)
	c := dialInstalled(t, ctx, w, m)
	param := "nixos_via_test.initrd_modules=" + strings.ReplaceAll(strings.ReplaceAll(strings.TrimSpace(mods[1]), `"`, ""), " ", ",")
	if got := run(t, ctx, c, "cat /proc/cmdline"); !strings.Contains(" "+got+" ", " "+param+" ") {
		t.Errorf("/proc/cmdline = %q, want %q from the generated file", got, param)
	}
}
