package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildBootDiskHasAnESPWithSystemdBootAndTheEntry(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy", "mdir", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s (vmtests/setup.sh installs it)", tool)
		}
	}
	if _, err := os.Stat(SystemdBootEFI); err != nil {
		t.Skip("no systemd-boot-efi")
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "k")
	initrd := filepath.Join(dir, "i")
	os.WriteFile(kernel, []byte(strings.Repeat("K", 3<<20)), 0o644)
	os.WriteFile(initrd, []byte("initrd"), 0o644)
	disk := filepath.Join(dir, "disk.img")
	if err := BuildBootDisk(context.Background(), disk, kernel, initrd, "console=ttyS0 marker=42"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sgdisk", "-p", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "EF00") {
		t.Fatalf("sgdisk -p: %v\n%s", err, out)
	}
	// Read the ESP back with mtools at its 1 MiB offset.
	img := disk + "@@1M"
	for path, want := range map[string]string{"::/loader/entries/boot.conf": "options console=ttyS0 marker=42", "::/loader/loader.conf": "default boot.conf"} {
		cmd := exec.Command("mtype", "-i", img, path)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		got, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(got), want) {
			t.Errorf("mtype %s = %q (%v), want %q", path, got, err, want)
		}
	}
	cmd := exec.Command("mdir", "-i", img, "-b", "::/EFI/BOOT")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if got, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(got), "BOOTX64.EFI") {
		t.Errorf("EFI/BOOT = %q (%v), want BOOTX64.EFI", got, err)
	}
	if err := BuildBootDisk(context.Background(), disk, filepath.Join(dir, "missing"), initrd, ""); err == nil {
		t.Errorf("a missing kernel was accepted")
	}
}
