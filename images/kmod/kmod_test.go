package kmod

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func hostIndex(t *testing.T) (*Index, string) {
	t.Helper()
	matches, _ := filepath.Glob("/lib/modules/*-cloud-amd64/modules.dep")
	if len(matches) == 0 {
		matches, _ = filepath.Glob("/lib/modules/*/modules.dep")
	}
	if len(matches) == 0 {
		t.Skip("no kernel modules installed (linux-image-cloud-amd64)")
	}
	dir := filepath.Dir(matches[0])
	idx, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return idx, dir
}

func indexOf(list []string, name string) int {
	for i, p := range list {
		if Name(p) == Name(name) {
			return i
		}
	}
	return -1
}

func TestResolveOrdersDependenciesFirst(t *testing.T) {
	idx, _ := hostIndex(t)
	tests := []struct {
		module string
		deps   []string
	}{
		{"virtio_blk", []string{"virtio", "virtio_ring"}},
		{"dm-crypt", []string{"dm_mod"}},
		{"btrfs", []string{"libcrc32c", "raid6_pq", "xor"}},
	}
	for _, tt := range tests {
		got, err := idx.Resolve(tt.module)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", tt.module, err)
		}
		self := indexOf(got, tt.module)
		if self != len(got)-1 {
			t.Errorf("Resolve(%s) = %v, want it last", tt.module, got)
		}
		for _, d := range tt.deps {
			if i := indexOf(got, d); i < 0 || i > self {
				t.Errorf("Resolve(%s) = %v, want %s before it", tt.module, got, d)
			}
		}
	}
	if _, err := idx.Resolve("no_such_module"); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("Resolve(unknown) error = %v, want one naming it", err)
	}
	// ext4 is built into the Debian cloud kernel: nothing to load.
	if idx.Builtin("ext4") {
		got, err := idx.Resolve("ext4")
		if err != nil || len(got) != 0 {
			t.Errorf("Resolve(builtin ext4) = %v, %v; want nothing", got, err)
		}
	}
}

func TestSubsetDepFileAndDepmod(t *testing.T) {
	idx, dir := hostIndex(t)
	mods, err := idx.Resolve("virtio_blk", "dm_crypt")
	if err != nil {
		t.Fatal(err)
	}
	dep, err := idx.DepFile(mods)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dep), "kernel/drivers/md/dm-crypt.ko: kernel/drivers/md/dm-mod.ko\n") {
		t.Errorf("DepFile = %q, lacks the dm-crypt line", dep)
	}
	if _, err := idx.DepFile([]string{"kernel/drivers/md/dm-crypt.ko"}); err == nil {
		t.Errorf("DepFile without dm-mod = nil error, want one")
	}

	if _, err := exec.LookPath("modprobe"); err != nil {
		t.Skip("kmod not installed")
	}
	kver := filepath.Base(dir)
	root := t.TempDir()
	for _, m := range mods {
		dst := filepath.Join(root, "lib/modules", kver, m)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		data, err := os.ReadFile(filepath.Join(dir, m))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dst, data, 0o644)
	}
	if err := Depmod(context.Background(), root, kver); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("modprobe", "-d", root, "-S", kver, "--show-depends", "dm_crypt").CombinedOutput()
	if err != nil {
		t.Fatalf("modprobe --show-depends dm_crypt: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "dm-mod.ko") || !strings.Contains(lines[1], "dm-crypt.ko") {
		t.Errorf("modprobe --show-depends dm_crypt = %q, want dm-mod then dm-crypt", lines)
	}
}
