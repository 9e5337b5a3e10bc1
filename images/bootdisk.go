package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SystemdBootEFI is Debian's systemd-boot for x86_64 (systemd-boot-efi).
const SystemdBootEFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// BuildBootDisk writes a GPT disk image with one EFI system partition that
// boots kernel and initrd with cmdline through systemd-boot. It needs no
// loop device or mount (mkfs.vfat -C, mtools, sgdisk, dd), so it works on
// any build host. With an out name ending in .qcow2 the image is converted
// to qcow2 (qemu-img). VM tests give the provider such a disk so that one
// QEMU process under OVMF boots the provider first and, once the install
// wrote a bootloader to the target disk (booted first), the new system.
func BuildBootDisk(ctx context.Context, out, kernel, initrd, cmdline string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".bootdisk-*")
	if err != nil {
		return fmt.Errorf("boot disk: %w", err)
	}
	defer os.RemoveAll(tmp)
	var size int64
	for _, f := range []string{kernel, initrd, SystemdBootEFI} {
		st, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("boot disk: %w", err)
		}
		size += st.Size()
	}
	espKiB := (size>>10 + 8192 + 1023) / 1024 * 1024 // files + 8 MiB, whole MiB
	esp := filepath.Join(tmp, "esp.img")
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	raw := out
	if strings.HasSuffix(out, ".qcow2") {
		raw = filepath.Join(tmp, "disk.img")
	}
	steps := [][]string{
		{"mkfs.vfat", "-C", esp, fmt.Sprint(espKiB)},
		{"mmd", "-i", esp, "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"},
		{"mcopy", "-i", esp, SystemdBootEFI, "::/EFI/BOOT/BOOTX64.EFI"},
		{"mcopy", "-i", esp, kernel, "::/vmlinuz"},
		{"mcopy", "-i", esp, initrd, "::/initrd"},
		{"mcopy", "-i", esp, write("loader.conf", "default boot.conf\ntimeout 0\n"), "::/loader/loader.conf"},
		{"mcopy", "-i", esp, write("boot.conf", "title boot\nlinux /vmlinuz\ninitrd /initrd\noptions "+cmdline+"\n"), "::/loader/entries/boot.conf"},
		{"truncate", "-s", fmt.Sprintf("%dK", espKiB+2048), raw},
		{"sgdisk", "-n", fmt.Sprintf("1:1M:+%dK", espKiB), "-t", "1:ef00", raw},
		{"dd", "if=" + esp, "of=" + raw, "bs=1M", "seek=1", "conv=notrunc", "status=none"},
	}
	if raw != out {
		steps = append(steps, []string{"qemu-img", "convert", "-q", "-O", "qcow2", raw, out})
	}
	os.Remove(out)
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, s[0], s[1:]...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("boot disk: %s: %w: %s", strings.Join(s, " "), err, strings.TrimSpace(string(b)))
		}
	}
	return nil
}
