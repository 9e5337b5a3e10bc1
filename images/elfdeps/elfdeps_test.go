package elfdeps

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/images/fstree"
)

func TestCollectSshdRunsInChroot(t *testing.T) {
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("openssh-server not installed: ", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	libs, err := NewResolver().Collect(sshd)
	if err != nil {
		t.Fatalf("Collect(%s): %v", sshd, err)
	}
	var names []string
	for _, l := range libs {
		names = append(names, filepath.Base(l))
	}
	for _, want := range []string{"ld-linux-x86-64.so.2", "libc.so.6", "libcrypto.so.3", "libz.so.1"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("Collect(sshd) = %v, lacks %s", names, want)
		}
	}

	run := func(skip string) (string, error) {
		tr := fstree.NewMergedUsr()
		if err := tr.CharDev("/dev/null", 0o666, 1, 3); err != nil {
			t.Fatal(err)
		}
		if err := tr.CopyFile(sshd, sshd, 0); err != nil {
			t.Fatal(err)
		}
		for _, l := range libs {
			if filepath.Base(l) == skip {
				continue
			}
			if err := tr.CopyFile(l, l, 0); err != nil {
				t.Fatal(err)
			}
		}
		dir := t.TempDir()
		if err := tr.WriteDir(dir); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("chroot", dir, sshd, "-V").CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "OpenSSH_") {
		t.Errorf("chroot DIR sshd -V = %q, %v; want an OpenSSH version", out, err)
	}
	// The same chroot without libcrypto must fail: the test can tell.
	if out, err := run("libcrypto.so.3"); err == nil || !strings.Contains(out, "libcrypto.so.3") {
		t.Errorf("sshd without libcrypto in the chroot: %q, %v; want a loader error naming it", out, err)
	}
}

func TestCollectStaticNeedsNothing(t *testing.T) {
	const bb = "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skip("busybox-static not installed: ", err)
	}
	libs, err := NewResolver().Collect(bb)
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) != 0 {
		t.Errorf("Collect(static busybox) = %v, want nothing", libs)
	}
	if dyn, err := IsDynamic(bb); err != nil || dyn {
		t.Errorf("IsDynamic(busybox) = %v, %v; want false", dyn, err)
	}
}

func TestCollectErrors(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	r := NewResolver()
	if _, err := r.Collect(notELF); err == nil || !strings.Contains(err.Error(), notELF) {
		t.Errorf("Collect(script) error = %v, want one naming the file", err)
	}
	if _, err := r.Collect(); err == nil {
		t.Errorf("Collect() = nil error, want one")
	}
	// A resolver with no directories cannot find libc.
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
		empty := &Resolver{}
		if _, err := empty.Collect("/usr/sbin/sshd"); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("Collect with no search dirs: error = %v, want 'not found'", err)
		}
	}
}
