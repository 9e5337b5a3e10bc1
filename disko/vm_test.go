package disko

// TestExecInVM runs the execution tests inside a QEMU guest when the host
// kernel cannot (no device-mapper, md or vfat, e.g. a minimal VM kernel
// without modules). The guest boots an installed Debian kernel that has
// those modules, from an initramfs holding this test binary, busybox, the
// real tools (with their libraries) and the kernel's modules. There is no
// udev in the guest, and the scripts run under busybox sh.

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/tail"
)

// vmTools are copied into the guest with their shared libraries.
var vmTools = []string{
	"blkid", "wipefs", "blockdev", "losetup", "mount", "umount", "findmnt", "lsblk", "sgdisk", "partprobe",
	"parted", "sfdisk", "mke2fs", "mkfs.ext4", "mkfs.vfat", "mkfs.fat", "mkfs.xfs", "mkfs.btrfs", "btrfs",
	"cryptsetup", "lvm", "dmsetup", "mdadm", "mkswap", "swapon", "swapoff", "kmod", "stty",
}

var lvmLinks = []string{"pvcreate", "vgcreate", "lvcreate", "vgchange", "vgremove", "pvs", "lvs", "vgs", "vgdisplay", "lvdisplay", "pvremove"}

func hostRunsAllExecTests() bool {
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		return false
	}
	if _, err := os.Stat("/proc/mdstat"); err != nil {
		return false
	}
	return kernelHasFS("vfat")
}

// vmKernel finds an installed kernel whose modules include dm-crypt and raid1.
func vmKernel() (kernel, release string, ok bool) {
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(kernels)))
	for _, k := range kernels {
		rel := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		dm, _ := filepath.Glob("/lib/modules/" + rel + "/kernel/drivers/md/dm-crypt.ko*")
		raid, _ := filepath.Glob("/lib/modules/" + rel + "/kernel/drivers/md/raid1.ko*")
		if len(dm) > 0 && len(raid) > 0 {
			return k, rel, true
		}
	}
	return "", "", false
}

var lddPathRe = regexp.MustCompile(`(/[^ ]+) \(0x`)

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTool copies an executable and the libraries ldd names.
func copyTool(root, name string) error {
	p, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	if err := copyFile(p, filepath.Join(root, "usr/sbin", name), 0o755); err != nil {
		return err
	}
	out, _ := exec.Command("ldd", p).Output()
	for _, m := range lddPathRe.FindAllStringSubmatch(string(out), -1) {
		dst := filepath.Join(root, m[1])
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := copyFile(m[1], dst, 0o755); err != nil {
			return err
		}
	}
	return nil
}

const vmInit = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
mkdir -p /run/lock /run/cryptsetup
for m in loop dm-mod dm-crypt dm-mirror raid1 vfat nls_cp437 nls_iso8859-1 ext4 xfs btrfs; do modprobe $m 2>/dev/null; done
cd /work/disko
DISKO_IN_VM=1 ./disko.test -test.v -test.count=1 -test.run '^TestExec' 2>&1
echo "VM-TEST-EXIT=$?"
poweroff -f
`

func TestExecInVM(t *testing.T) {
	if os.Getenv("DISKO_IN_VM") == "1" {
		t.Skip("already inside the test VM")
	}
	if testing.Short() {
		t.Skip("-short: the VM run takes minutes")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to read the kernel modules and run the tools")
	}
	if hostRunsAllExecTests() {
		t.Skip("the host kernel has device-mapper, md and vfat: the execution tests ran directly")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed; device-mapper, md and vfat execution tests were skipped on this kernel")
	}
	for _, tool := range []string{"busybox", "cpio", "ldd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	kernel, release, ok := vmKernel()
	if !ok {
		t.Skip("no installed kernel under /boot with dm-crypt and raid1 modules (Debian: linux-image-cloud-amd64)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp", "work/disko"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, _ := exec.LookPath("busybox")
	if err := copyFile(bb, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "awk", "sed", "tr", "readlink", "cat", "dd", "mktemp", "sleep", "grep", "dirname", "mkdir", "rm", "ls", "printf", "echo", "test", "head", "tail", "cut", "wc", "sync", "poweroff", "env", "true", "false", "basename", "id", "uname", "modprobe"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range vmTools {
		if err := copyTool(root, tool); err != nil {
			t.Skipf("copy %s into the guest: %v", tool, err)
		}
	}
	// modprobe from kmod understands the module dependency files.
	_ = os.Remove(filepath.Join(root, "bin/modprobe"))
	if err := os.Symlink("/usr/sbin/kmod", filepath.Join(root, "sbin/modprobe")); err != nil {
		t.Fatal(err)
	}
	for _, l := range lvmLinks {
		if err := os.Symlink("lvm", filepath.Join(root, "usr/sbin", l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "lib/modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/lib/modules/"+release, filepath.Join(root, "lib/modules")+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy modules: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", "-a", "testdata", filepath.Join(root, "work/disko")+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy testdata: %v\n%s", err, out)
	}
	if err := copyFile(self, filepath.Join(root, "work/disko/disko.test"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(vmInit), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	cpio := exec.Command("sh", "-c", "find . | cpio -o -H newc >"+shq(initrd))
	cpio.Dir = root
	if out, err := cpio.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	accel := "tcg,thread=multi" // nested KVM is often unusable; TCG always works
	if a := os.Getenv("DISKO_VM_ACCEL"); a != "" {
		accel = a
	}
	cmd := exec.CommandContext(ctx, qemu, "-accel", accel, "-cpu", "max", "-m", "3072", "-smp", "2",
		"-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", qemu, err)
	}
	var log strings.Builder
	var failed []string
	exit := ""
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		log.WriteString(line + "\n")
		switch {
		case strings.HasPrefix(line, "--- PASS"), strings.HasPrefix(line, "--- SKIP"):
			t.Log("guest:", line)
		case strings.HasPrefix(line, "--- FAIL"):
			failed = append(failed, line)
		case strings.HasPrefix(line, "VM-TEST-EXIT="):
			exit = strings.TrimPrefix(line, "VM-TEST-EXIT=")
		}
	}
	werr := cmd.Wait()
	t.Logf("guest run took %v (kernel %s)", time.Since(start).Round(time.Second), release)
	if exit != "0" || len(failed) > 0 {
		t.Errorf("execution tests in the guest failed (exit %q, qemu: %v): %v\n%s", exit, werr, failed, tail.Lines(log.String(), 200))
	}
	if !strings.Contains(log.String(), "--- PASS: TestExecLUKSLVM") || !strings.Contains(log.String(), "--- PASS: TestExecMdadmRAID1") {
		t.Errorf("the guest did not run the LUKS+LVM and mdadm tests:\n%s", tail.Lines(log.String(), 80))
	}
}
