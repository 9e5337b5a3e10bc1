package enter

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

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

// TestEnterLeavesSharedMountsAlone runs enter in a mount namespace whose
// every mount is shared, as systemd leaves a machine's: the command runs
// in the root (it sees its own /proc, /dev and /sys there), and afterwards
// the namespace has exactly the mounts it had before; nothing enter
// mounted propagated back, and nothing of the namespace was unmounted.
func TestEnterLeavesSharedMountsAlone(t *testing.T) {
	if os.Getenv("NIXOS_VIA_ENTER_HELPER") != "" {
		helperEnter(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, chroot)")
	}
	root := fakeRoot(t)
	dir := t.TempDir()
	driver := `set -e
mount --make-rshared /
cat /proc/self/mountinfo > "$1/before"
NIXOS_VIA_ENTER_HELPER="$2" "$3" -test.run '^TestEnterLeavesSharedMountsAlone$' -test.count=1 > "$1/out" 2>&1 || { cat "$1/out"; exit 1; }
cat /proc/self/mountinfo > "$1/after"
`
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("unshare", "-m", "sh", "-c", driver, "sh", dir, root, exe).CombinedOutput(); err != nil {
		t.Fatalf("the namespace's driver: %v\n%s", err, b)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "before"))
	after, _ := os.ReadFile(filepath.Join(dir, "after"))
	if string(before) != string(after) {
		t.Errorf("the mounts after enter:\n%s\nwant those before it:\n%s", after, before)
	}
	if out, _ := os.ReadFile(filepath.Join(dir, "out")); !strings.Contains(string(out), "in the root: dev=yes proc=yes sys=yes") {
		t.Errorf("the command's output:\n%s\nwant it to see /dev, /proc and /sys in the root", out)
	}
}

// helperEnter is the test binary run inside the shared namespace: enter
// the root named by NIXOS_VIA_ENTER_HELPER and report what it sees.
func helperEnter(t *testing.T) {
	var out strings.Builder
	err := Run(Options{Root: os.Getenv("NIXOS_VIA_ENTER_HELPER"), NoActivate: true, Stdout: &out, Stderr: &out,
		Command: []string{"/bin/sh", "-c", `d=no p=no s=no; [ -c /dev/null ] && d=yes; [ -r /proc/self/mountinfo ] && p=yes; [ -d /sys/kernel ] && s=yes; echo "in the root: dev=$d proc=$p sys=$s"`}})
	fmt.Print(out.String())
	if err != nil {
		t.Fatal(err)
	}
}

// fakeRoot is a root with etc/NIXOS and this machine's /bin/sh with its
// libraries, enough to run a shell in a chroot of it.
func fakeRoot(t *testing.T) string {
	t.Helper()
	r := t.TempDir()
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ldd", sh).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", sh, err)
	}
	files := map[string]string{sh: filepath.Join(r, "bin/sh")}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files[f] = filepath.Join(r, f)
		}
	}
	for src, dst := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(r, "etc"), 0o755)
	os.WriteFile(filepath.Join(r, "etc/NIXOS"), nil, 0o644)
	return r
}

// TestEnterOnATerminal runs enter (the test binary again) on a
// pseudo-terminal (script(1)): the command is the terminal's foreground
// process group, so a Ctrl-C there (here: the command sending SIGINT to
// its own process group) reaches the command and not nixos-via, and the
// terminal is nixos-via's again afterwards.
func TestEnterOnATerminal(t *testing.T) {
	if os.Getenv("NIXOS_VIA_ENTER_TTY") != "" {
		helperTerminal(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, chroot)")
	}
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("no script(1) for a pseudo-terminal (Debian: util-linux)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("script", "-qec", exe+" -test.run '^TestEnterOnATerminal$' -test.count=1 -test.v", "/dev/null")
	cmd.Env = append(os.Environ(), "NIXOS_VIA_ENTER_TTY="+fakeRoot(t))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nixos-via survived the Ctrl-C; the terminal is its own again") {
		t.Errorf("enter on a terminal: %v\n%s\nwant the command alone interrupted and the terminal given back", err, out)
	}
}

// helperTerminal is the test binary run on the pseudo-terminal.
func helperTerminal(t *testing.T) {
	err := Run(Options{Root: os.Getenv("NIXOS_VIA_ENTER_TTY"), NoActivate: true, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Command: []string{"/bin/sh", "-c", "kill -INT 0; echo not interrupted"}})
	if err == nil {
		t.Fatal("the command was not interrupted")
	}
	fg, ierr := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	if ierr != nil || fg != unix.Getpgrp() {
		t.Fatalf("the terminal's foreground group is %d (%v), want ours, %d", fg, ierr, unix.Getpgrp())
	}
	fmt.Println("nixos-via survived the Ctrl-C; the terminal is its own again")
}
