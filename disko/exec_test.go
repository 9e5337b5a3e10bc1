package disko

// Execution tests: render a layout, run the script as root with the real
// tools on loop devices (no udev here: loop partitions have no
// by-partlabel links), and check the result with blkid, /proc/self/mounts,
// /proc/swaps, cryptsetup, lvs and mdadm. Then unmount, mount again and
// check again. They run serially (no t.Parallel) and clean up in
// t.Cleanup even on failure.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	gptLinux = "0fc63daf-8483-4772-8e79-3d69d8477de4"
	gptBIOS  = "21686148-6449-6e6f-744e-656564454649"
	gptESP   = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	gptSwap  = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
)

// testShell runs the scripts: busybox sh when installed (its applets stand
// in for mount, umount, swapon… as on busybox initrds and rescue systems),
// else sh. DISKO_TEST_SHELL overrides it ("sh", "dash", "busybox sh").
func testShell() []string {
	if s := os.Getenv("DISKO_TEST_SHELL"); s != "" {
		return strings.Fields(s)
	}
	if _, err := exec.LookPath("busybox"); err == nil {
		return []string{"busybox", "sh"}
	}
	return []string{"sh"}
}

// rig is one execution test: loop devices, a root mountpoint, cleanup.
type rig struct {
	t      *testing.T
	layout string // layout JSON with the loop devices substituted
	l      *Layout
	loops  []string
	root   string
	dir    string
	vgs    []string
	luks   []string
	mds    []string
	pools  []string
}

type requirement struct {
	tools []string
	fs    []string
	dm    []string // device-mapper targets (crypt, linear, …)
	md    bool
}

func skipUnlessReady(t *testing.T, req requirement) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("execution tests need root (loop devices, mkfs, mount)")
	}
	base := []string{"losetup", "sgdisk", "partprobe", "blkid", "wipefs", "blockdev", "mount", "umount", "sh"}
	for _, tool := range append(base, req.tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	for _, fs := range req.fs {
		if !kernelHasFS(fs) {
			t.Skipf("the running kernel (%s) cannot mount %s (not in /proc/filesystems and modprobe %s failed)", kernelRelease(), fs, fs)
		}
	}
	if len(req.dm) > 0 {
		_ = exec.Command("modprobe", "dm_mod").Run()
		if _, err := os.Stat("/dev/mapper/control"); err != nil {
			if out, err := exec.Command("dmsetup", "mknodes").CombinedOutput(); err != nil {
				t.Skipf("the running kernel (%s) has no device-mapper: %v %s", kernelRelease(), err, out)
			}
		}
		for _, target := range req.dm {
			_ = exec.Command("modprobe", "dm_"+target).Run()
			out, err := exec.Command("dmsetup", "targets").Output()
			if err != nil || !strings.Contains(string(out), target) {
				t.Skipf("the running kernel (%s) has no device-mapper target %q (dmsetup targets: %s)", kernelRelease(), target, strings.TrimSpace(string(out)))
			}
		}
	}
	if req.md {
		_ = exec.Command("modprobe", "raid1").Run()
		b, err := os.ReadFile("/proc/mdstat")
		if err != nil || !strings.Contains(string(b), "raid1") {
			t.Skipf("the running kernel (%s) has no md raid1 (/proc/mdstat: %v)", kernelRelease(), err)
		}
	}
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func kernelHasFS(fs string) bool {
	has := func() bool {
		b, _ := os.ReadFile("/proc/filesystems")
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && f[len(f)-1] == fs {
				return true
			}
		}
		return false
	}
	if has() {
		return true
	}
	_ = exec.Command("modprobe", fs).Run()
	return has()
}

// newRig creates n sparse disks of sizeMB, substitutes them for /dev/vda,
// /dev/vdb, … in testdata/exec/<file> and registers the cleanup.
func newRig(t *testing.T, file string, n, sizeMB int, subst map[string]string) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir()}
	r.root = filepath.Join(r.dir, "mnt")
	t.Cleanup(r.cleanup)
	for i := 0; i < n; i++ {
		img := filepath.Join(r.dir, fmt.Sprintf("disk%d.img", i))
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(int64(sizeMB) << 20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		out, err := exec.Command("losetup", "-P", "--find", "--show", img).Output()
		if err != nil {
			t.Fatalf("losetup -P --find --show %s: %v", img, err)
		}
		r.loops = append(r.loops, strings.TrimSpace(string(out)))
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "exec", file))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for k, v := range subst {
		text = strings.ReplaceAll(text, k, v)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	disks, _ := v["disk"].(map[string]any)
	for _, d := range disks {
		dm := d.(map[string]any)
		dev := dm["device"].(string)
		idx := int(dev[len(dev)-1] - 'a')
		if !strings.HasPrefix(dev, "/dev/vd") || idx < 0 || idx >= n {
			t.Fatalf("%s: disk device %s is not one of /dev/vda…/dev/vd%c", file, dev, 'a'+n-1)
		}
		dm["device"] = r.loops[idx]
	}
	b, _ := json.Marshal(v)
	r.layout = string(b)
	r.l, err = Parse(b)
	if err != nil {
		t.Fatalf("Parse(%s): %v", file, err)
	}
	for _, vg := range r.l.VGs {
		r.vgs = append(r.vgs, vg.Name)
	}
	for _, m := range r.l.MDArrays {
		r.mds = append(r.mds, m.Name)
	}
	for _, z := range r.l.Zpools {
		r.pools = append(r.pools, z.Name)
	}
	r.l.eachContent(func(_ Device, c Content) {
		if x, ok := c.(*LUKS); ok {
			r.luks = append(r.luks, x.Name)
		}
	})
	return r
}

// run renders mode and runs it; it returns the script's output.
func (r *rig) run(mode Mode) string {
	r.t.Helper()
	script, err := r.l.Script(mode, RenderOptions{RootMountpoint: r.root})
	if err != nil {
		r.t.Fatalf("Script(%s): %v", mode, err)
	}
	path := filepath.Join(r.dir, strings.ReplaceAll(mode.String(), ",", "-")+".sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	sh := testShell()
	cmd := exec.CommandContext(ctx, sh[0], append(sh[1:], path, "--yes-wipe-all-disks")...)
	cmd.Env = append(os.Environ(), "DISKO_DEVICE_TIMEOUT=30")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("mode %s failed: %v\n%s", mode, err, out)
	}
	r.t.Logf("mode %s took %v", mode, time.Since(start).Round(time.Millisecond))
	return string(out)
}

// part is the kernel device of partition n (1-based) of disk i.
func (r *rig) part(i, n int) string {
	r.t.Helper()
	base := filepath.Base(r.loops[i])
	matches, _ := filepath.Glob(fmt.Sprintf("/sys/class/block/%s/*/partition", base))
	for _, m := range matches {
		b, _ := os.ReadFile(m)
		if strings.TrimSpace(string(b)) == fmt.Sprint(n) {
			return "/dev/" + filepath.Base(filepath.Dir(m))
		}
	}
	r.t.Fatalf("%s has no partition %d", r.loops[i], n)
	return ""
}

func blkidProbe(dev string) map[string]string {
	out, _ := exec.Command("blkid", "-p", "-o", "export", dev).Output()
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// expectPart checks GPT name, type GUID and signature of a partition.
func (r *rig) expectPart(disk, n int, label, typeGUID, fstype string) {
	r.t.Helper()
	dev := r.part(disk, n)
	p := blkidProbe(dev)
	if p["PART_ENTRY_NAME"] != label {
		r.t.Errorf("%s: partition name %q, want %q", dev, p["PART_ENTRY_NAME"], label)
	}
	if strings.ToLower(p["PART_ENTRY_TYPE"]) != typeGUID {
		r.t.Errorf("%s: partition type %q, want %q", dev, p["PART_ENTRY_TYPE"], typeGUID)
	}
	if p["TYPE"] != fstype {
		r.t.Errorf("%s: signature %q, want %q", dev, p["TYPE"], fstype)
	}
}

type mountInfo struct{ source, fstype, opts string }

func mounts() map[string]mountInfo {
	out := map[string]mountInfo{}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) >= 4 {
			target := strings.NewReplacer(`\040`, " ", `\134`, `\`).Replace(fl[1])
			out[target] = mountInfo{fl[0], fl[2], fl[3]}
		}
	}
	return out
}

func realDev(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// expectMount checks that mp (relative to the root) is mounted from
// source (a device, compared after resolving links; "" skips) with fstype
// and every option in opts.
func (r *rig) expectMount(mp, fstype, source string, opts ...string) {
	r.t.Helper()
	target := strings.TrimSuffix(r.root+mp, "/")
	m, ok := mounts()[target]
	if !ok {
		r.t.Errorf("%s is not mounted", target)
		return
	}
	if m.fstype != fstype {
		r.t.Errorf("%s: fstype %s, want %s", target, m.fstype, fstype)
	}
	if source != "" && realDev(m.source) != realDev(source) {
		r.t.Errorf("%s: mounted from %s, want %s", target, m.source, source)
	}
	have := map[string]bool{}
	for _, o := range strings.Split(m.opts, ",") {
		have[o] = true
	}
	for _, o := range opts {
		if !have[o] {
			r.t.Errorf("%s: options %s lack %s", target, m.opts, o)
		}
	}
}

func (r *rig) mountedUnderRoot() []string {
	var out []string
	for target := range mounts() {
		if target == r.root || strings.HasPrefix(target, r.root+"/") {
			out = append(out, target)
		}
	}
	return out
}

func (r *rig) expectNothingMounted() {
	r.t.Helper()
	if m := r.mountedUnderRoot(); len(m) > 0 {
		r.t.Errorf("still mounted after unmount: %v", m)
	}
}

func activeSwaps() map[string]bool {
	b, _ := os.ReadFile("/proc/swaps")
	out := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); i > 0 && len(f) > 0 {
			out[f[0]] = true
		}
	}
	return out
}

func mapperOpen(name string) bool {
	return exec.Command("cryptsetup", "status", name).Run() == nil
}

func lvActive(vg, lv string) bool {
	out, err := exec.Command("lvs", "--noheadings", "-o", "lv_active", vg+"/"+lv).Output()
	return err == nil && strings.TrimSpace(string(out)) == "active"
}

// cleanup tears everything down with the plain tools, independent of the
// code under test.
func (r *rig) cleanup() {
	run := func(name string, args ...string) {
		_ = exec.Command(name, args...).Run()
	}
	if len(r.mountedUnderRoot()) > 0 {
		run("umount", "-R", r.root)
		if len(r.mountedUnderRoot()) > 0 {
			run("umount", "-R", "-l", r.root)
		}
	}
	for dev := range activeSwaps() {
		for _, l := range r.loops {
			if strings.HasPrefix(dev, l+"p") || strings.HasPrefix(dev, r.root) {
				run("swapoff", dev)
			}
		}
	}
	for _, pool := range r.pools {
		run("zpool", "destroy", "-f", pool)
	}
	for _, vg := range r.vgs {
		run("vgchange", "-a", "n", vg)
	}
	for i := len(r.luks) - 1; i >= 0; i-- {
		run("cryptsetup", "close", r.luks[i])
	}
	for _, vg := range r.vgs { // a VG on LUKS is only visible while it is open
		run("vgchange", "-a", "n", vg)
	}
	for _, md := range r.mds {
		run("mdadm", "--stop", "/dev/md/"+md)
	}
	// Arrays that were assembled under their kernel name.
	for _, l := range r.loops {
		holders, _ := filepath.Glob(fmt.Sprintf("/sys/class/block/%s*/holders/md*", filepath.Base(l)))
		for _, h := range holders {
			run("mdadm", "--stop", "/dev/"+filepath.Base(h))
		}
	}
	for _, l := range r.loops {
		run("losetup", "-d", l)
	}
}

// cycle runs destroy,format,mount, checks, unmounts, mounts again and
// checks again; then format once more must change nothing.
func (r *rig) cycle(check func()) {
	r.t.Helper()
	r.run(ModeDestroyFormatMount)
	check()
	if r.t.Failed() {
		return
	}
	r.run(ModeUnmount)
	r.expectNothingMounted()
	for _, name := range r.luks {
		if mapperOpen(name) {
			r.t.Errorf("LUKS mapping %s still open after unmount", name)
		}
	}
	r.run(ModeMount)
	check()
	r.run(ModeFormat)
	check()
}

func TestExecSimpleEFI(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.vfat", "mkfs.ext4"}, fs: []string{"vfat", "ext4"}})
	r := newRig(t, "simple-efi.json", 1, 256, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-main-ESP", gptESP, "vfat")
		r.expectPart(0, 2, "disk-main-root", gptLinux, "ext4")
		if got := blkidProbe(r.part(0, 2))["LABEL"]; got != "nvtroot" {
			t.Errorf("root filesystem label %q, want nvtroot (extraArgs)", got)
		}
		r.expectMount("/", "ext4", r.part(0, 2))
		r.expectMount("/boot", "vfat", r.part(0, 1), "fmask=0077")
	})
}

func TestExecBIOSBoot(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.ext4"}, fs: []string{"ext4"}})
	r := newRig(t, "bios-boot.json", 1, 128, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-main-boot", gptBIOS, "")
		r.expectPart(0, 2, "disk-main-root", gptLinux, "ext4")
		out, err := exec.Command("sgdisk", "-i", "1", r.loops[0]).Output()
		if err != nil || !strings.Contains(string(out), "Attribute flags: 0000000000000001") {
			t.Errorf("partition 1 attributes: want bit 0 set, sgdisk -i 1: %v\n%s", err, out)
		}
		r.expectMount("/", "ext4", r.part(0, 2))
	})
}

func TestExecBtrfsSubvolumes(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.btrfs", "btrfs"}, fs: []string{"btrfs"}})
	r := newRig(t, "btrfs-subvolumes.json", 1, 384, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-main-root", gptLinux, "btrfs")
		dev := r.part(0, 1)
		r.expectMount("/", "btrfs", dev, "subvol=/rootfs")
		r.expectMount("/home", "btrfs", dev, "subvol=/home")
		r.expectMount("/nix", "btrfs", dev, "subvol=/nix", "noatime")
		r.expectMount("/partition-root", "btrfs", dev, "subvol=/")
		out, err := exec.Command("btrfs", "subvolume", "list", r.root+"/partition-root").Output()
		if err != nil || !strings.Contains(string(out), "path home/user") {
			t.Errorf("nested subvolume home/user missing: %v\n%s", err, out)
		}
		if fi, err := os.Stat(r.root + "/partition-root/swapfile"); err != nil || fi.Size() != 16<<20 {
			t.Errorf("top-level swap file: %v (size %v), want 16M", err, fi)
		}
	})
}

func TestExecSwap(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.ext4", "mkswap", "swapon", "swapoff"}, fs: []string{"ext4"}})
	r := newRig(t, "swap.json", 1, 256, nil)
	check := func() {
		// Partition order: encswap, swap (priority 1000, name order), root (100%).
		r.expectPart(0, 1, "disk-main-encswap", gptSwap, "")
		r.expectPart(0, 2, "disk-main-swap", gptSwap, "swap")
		r.expectPart(0, 3, "disk-main-root", gptLinux, "ext4")
		r.expectMount("/", "ext4", r.part(0, 3))
		// disko §5.1: mount mode activates plain swap, never randomEncryption.
		if !activeSwaps()[r.part(0, 2)] {
			t.Errorf("swap %s not active after mount (/proc/swaps: %v)", r.part(0, 2), activeSwaps())
		}
		if activeSwaps()[r.part(0, 1)] {
			t.Errorf("randomEncryption swap %s was activated", r.part(0, 1))
		}
	}
	r.run(ModeDestroyFormatMount)
	check()
	r.run(ModeUnmount)
	r.expectNothingMounted()
	if activeSwaps()[r.part(0, 2)] {
		t.Errorf("swap still active after unmount")
	}
	r.run(ModeMount)
	check()
}

func TestExecTmpfsRoot(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.ext4"}, fs: []string{"ext4", "tmpfs"}})
	r := newRig(t, "tmpfs-root.json", 1, 128, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-main-nix", gptLinux, "ext4")
		r.expectMount("/", "tmpfs", "", "mode=755", "size=65536k")
		r.expectMount("/nix", "ext4", r.part(0, 1))
	})
}

func TestExecMultiDisk(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.ext4", "mkfs.xfs"}, fs: []string{"ext4", "xfs"}})
	r := newRig(t, "multi-disk.json", 2, 384, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-a-boot", gptBIOS, "")
		r.expectPart(0, 2, "disk-a-root", gptLinux, "ext4")
		r.expectPart(1, 1, "disk-b-data", gptLinux, "xfs")
		r.expectMount("/", "ext4", r.part(0, 2))
		r.expectMount("/srv/data", "xfs", r.part(1, 1))
	})
}

func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecLUKSKeyFileBtrfs(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"cryptsetup", "mkfs.btrfs", "btrfs"}, fs: []string{"btrfs"}, dm: []string{"crypt"}})
	secrets := t.TempDir()
	key := writeSecret(t, secrets, "disk.key", "nvt-first-key-material-0123456789")
	key2 := writeSecret(t, secrets, "extra.key", "nvt-second-key-material-9876543210")
	r := newRig(t, "luks-btrfs.json", 1, 384, map[string]string{"@KEYFILE@": key, "@KEYFILE2@": key2})
	check := func() {
		r.expectPart(0, 1, "disk-main-luks", gptLinux, "crypto_LUKS")
		if !mapperOpen("nvtcrypt1") {
			t.Fatal("LUKS nvtcrypt1 is not open")
		}
		r.expectMount("/", "btrfs", "/dev/mapper/nvtcrypt1", "subvol=/root")
		r.expectMount("/home", "btrfs", "/dev/mapper/nvtcrypt1", "subvol=/home")
		r.expectMount("/nix", "btrfs", "/dev/mapper/nvtcrypt1", "subvol=/nix", "noatime")
		r.expectMount("/.swapvol", "btrfs", "/dev/mapper/nvtcrypt1", "subvol=/swap")
		if _, err := os.Stat(r.root + "/.swapvol/swapfile"); err != nil {
			t.Errorf("swap file: %v", err)
		}
		for _, k := range []string{key, key2} {
			if err := exec.Command("cryptsetup", "open", "--test-passphrase", r.part(0, 1), "--key-file", k).Run(); err != nil {
				t.Errorf("key %s does not unlock the container: %v", filepath.Base(k), err)
			}
		}
		out, _ := exec.Command("cryptsetup", "luksDump", r.part(0, 1)).Output()
		if n := strings.Count(string(out), ": luks2"); n != 2 {
			t.Errorf("key slots in use: %d, want 2 (disko §5.9: luksAddKey must not add the key again)", n)
		}
	}
	r.cycle(check)
}

func TestExecLUKSLVM(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"cryptsetup", "pvcreate", "vgcreate", "lvcreate", "mkfs.ext4"}, fs: []string{"ext4"}, dm: []string{"crypt", "linear"}})
	const passphrase = "nvt passphrase with spaces 42"
	pw := writeSecret(t, t.TempDir(), "pw", passphrase+"\n\n")
	r := newRig(t, "luks-lvm.json", 1, 384, map[string]string{"@PASSWORDFILE@": pw})
	check := func() {
		r.expectPart(0, 1, "disk-main-boot", gptLinux, "ext4")
		r.expectPart(0, 2, "disk-main-luks", gptLinux, "crypto_LUKS")
		if !lvActive("nvtvg2", "root") || !lvActive("nvtvg2", "home") {
			t.Errorf("LVs of nvtvg2 are not active")
		}
		r.expectMount("/", "ext4", "/dev/nvtvg2/root")
		r.expectMount("/home", "ext4", "/dev/nvtvg2/home")
		r.expectMount("/boot", "ext4", r.part(0, 1))
		// The passphrase is the file without its trailing newlines.
		cmd := exec.Command("cryptsetup", "open", "--test-passphrase", r.part(0, 2), "--key-file", "-")
		cmd.Stdin = strings.NewReader(passphrase)
		if err := cmd.Run(); err != nil {
			t.Errorf("the passphrase without trailing newlines does not unlock the container: %v", err)
		}
	}
	out := r.run(ModeDestroyFormatMount)
	if strings.Contains(out, passphrase) {
		t.Errorf("the script printed the passphrase")
	}
	check()
	r.run(ModeUnmount)
	r.expectNothingMounted()
	if mapperOpen("nvtcrypt2") || lvActive("nvtvg2", "root") {
		t.Errorf("unmount left nvtcrypt2 open or nvtvg2 active")
	}
	out = r.run(ModeMount)
	if strings.Contains(out, passphrase) {
		t.Errorf("the mount script printed the passphrase")
	}
	check()
}

func TestExecLVMTwoDisks(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"pvcreate", "vgcreate", "lvcreate", "mkfs.ext4", "mkfs.xfs"}, fs: []string{"ext4", "xfs"}, dm: []string{"linear"}})
	r := newRig(t, "lvm-two-disks.json", 2, 512, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-one-primary", gptLinux, "LVM2_member")
		r.expectPart(1, 1, "disk-two-primary", gptLinux, "LVM2_member")
		out, err := exec.Command("pvs", "--noheadings", "-o", "pv_name,vg_name").Output()
		for _, p := range []string{r.part(0, 1), r.part(1, 1)} {
			if err != nil || !strings.Contains(string(out), p) {
				t.Errorf("%s is not a PV of nvtvg3: %v\n%s", p, err, out)
			}
		}
		r.expectMount("/", "ext4", "/dev/nvtvg3/root")
		r.expectMount("/data", "xfs", "/dev/nvtvg3/data")
	})
}

func TestExecMdadmRAID1(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mdadm", "mkfs.ext4"}, fs: []string{"ext4"}, md: true})
	r := newRig(t, "mdadm-raid1.json", 2, 256, nil)
	r.cycle(func() {
		r.expectPart(0, 2, "disk-one-raid", gptLinux, "linux_raid_member")
		r.expectPart(1, 2, "disk-two-raid", gptLinux, "linux_raid_member")
		md, err := exec.Command("mdadm", "--detail", "--export", "/dev/md/nvtmd4").Output()
		if err != nil || !strings.Contains(string(md), "MD_LEVEL=raid1") || !strings.Contains(string(md), "MD_DEVICES=2") {
			t.Errorf("/dev/md/nvtmd4 is not a 2-disk raid1: %v\n%s", err, md)
		}
		r.expectMount("/", "ext4", "/dev/md/nvtmd4")
	})
}

// Format only what looks empty: a partition that already holds another
// filesystem stops the script instead of being formatted over.
func TestExecFormatRefusesForeignSignature(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.ext4", "mkfs.xfs"}, fs: []string{"ext4"}})
	r := newRig(t, "bios-boot.json", 1, 384, nil)
	r.run(ModeDestroyFormatMount)
	r.run(ModeUnmount)
	if out, err := exec.Command("mkfs.xfs", "-f", r.part(0, 2)).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	script, err := r.l.Script(ModeFormat, RenderOptions{RootMountpoint: r.root})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.dir, "format-again.sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	sh := testShell()
	out, err := exec.Command(sh[0], append(sh[1:], path)...).CombinedOutput()
	if err == nil {
		t.Fatalf("format over an xfs partition succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "holds a 'xfs' signature but the layout wants 'ext4'") {
		t.Errorf("unclear refusal:\n%s", out)
	}
	if got := blkidProbe(r.part(0, 2))["TYPE"]; got != "xfs" {
		t.Errorf("the xfs filesystem was touched: TYPE=%q", got)
	}
}

// The destroy mode wipes disks that carry a previous installation.
func TestExecDestroyWipesPreviousLayout(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.ext4", "mkfs.xfs"}, fs: []string{"ext4", "xfs"}})
	r := newRig(t, "multi-disk.json", 2, 384, nil)
	r.run(ModeDestroyFormatMount)
	// Leave it mounted with a file on it; destroy,format,mount must cope.
	if err := os.WriteFile(r.root+"/srv/data/old", []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run(ModeDestroyFormatMount)
	if _, err := os.Stat(r.root + "/srv/data/old"); err == nil {
		t.Errorf("a file of the previous installation survived destroy,format,mount")
	}
	r.expectMount("/srv/data", "xfs", r.part(1, 1))
	r.run(ModeDestroy)
	r.expectNothingMounted()
	for i := range r.loops {
		if p := blkidProbe(r.loops[i]); p["PTTYPE"] != "" || p["TYPE"] != "" {
			t.Errorf("%s still has signatures after destroy: %v", r.loops[i], p)
		}
	}
}

// A missing or empty key file stops the script before luksFormat: nothing
// is ever encrypted with an empty key.
func TestExecMissingKeyFileStops(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"cryptsetup", "mkfs.btrfs"}})
	empty := writeSecret(t, t.TempDir(), "empty.key", "")
	r := newRig(t, "luks-btrfs.json", 1, 128, map[string]string{"@KEYFILE@": empty, "@KEYFILE2@": empty})
	script, err := r.l.Script(ModeDestroyFormatMount, RenderOptions{RootMountpoint: r.root})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.dir, "script.sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	sh := testShell()
	out, err := exec.Command(sh[0], append(sh[1:], path, "--yes-wipe-all-disks")...).CombinedOutput()
	if err == nil {
		t.Fatalf("the script went on with an empty key file:\n%s", out)
	}
	if !strings.Contains(string(out), "key file "+empty+" of LUKS nvtcrypt1 is missing or empty") {
		t.Errorf("unclear error:\n%s", out)
	}
	if strings.Contains(string(out), "luksFormat") {
		t.Errorf("luksFormat ran:\n%s", out)
	}
	if got := blkidProbe(r.part(0, 1))["TYPE"]; got != "" {
		t.Errorf("partition got a %q signature", got)
	}
}

func TestExecLegacyMsdosTable(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"parted", "mkfs.ext4", "mkswap", "swapon"}, fs: []string{"ext4"}})
	r := newRig(t, "legacy-msdos.json", 1, 256, nil)
	check := func() {
		if pt := blkidProbe(r.loops[0])["PTTYPE"]; pt != "dos" {
			t.Errorf("partition table %q, want dos", pt)
		}
		root, swap := blkidProbe(r.part(0, 1)), blkidProbe(r.part(0, 2))
		if root["TYPE"] != "ext4" || root["PART_ENTRY_TYPE"] != "0x83" || root["PART_ENTRY_FLAGS"] != "0x80" {
			t.Errorf("partition 1: %v, want a bootable 0x83 ext4 partition", root)
		}
		if swap["TYPE"] != "swap" || swap["PART_ENTRY_TYPE"] != "0x82" {
			t.Errorf("partition 2: %v, want a 0x82 swap partition", swap)
		}
		r.expectMount("/", "ext4", r.part(0, 1))
		if !activeSwaps()[r.part(0, 2)] {
			t.Errorf("swap %s is not active", r.part(0, 2))
		}
	}
	r.cycle(check)
}

// disko §5.2 and the MBR numbering of hybrid partitions: with the default
// efiGptPartitionFirst = true, sgdisk -h puts the protective EE entry
// first, so GPT partition 1 is MBR entry 2.
func TestExecHybridMBR(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"sfdisk", "mkfs.ext4"}, fs: []string{"ext4"}})
	r := newRig(t, "hybrid-mbr.json", 1, 128, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-main-firm", gptLinux, "ext4")
		r.expectPart(0, 2, "disk-main-root", gptLinux, "ext4")
		r.expectMount("/", "ext4", r.part(0, 2))
		out, err := exec.Command("sfdisk", "--label-nested", "dos", "-d", r.loops[0]).Output()
		if err != nil {
			t.Fatalf("sfdisk -d: %v", err)
		}
		var entries []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, r.loops[0]) {
				entries = append(entries, strings.Join(strings.Fields(line[strings.Index(line, ":")+1:]), " "))
			}
		}
		want := []string{"start= 1, size= 2047, type=ee", "start= 2048, size= 32768, type=c, bootable"}
		if strings.Join(entries, "\n") != strings.Join(want, "\n") {
			t.Errorf("hybrid MBR entries:\n%s\nwant:\n%s", strings.Join(entries, "\n"), strings.Join(want, "\n"))
		}
	})
}

func moduleLoads(name string) bool {
	if kernelHasFS(name) {
		return true
	}
	return exec.Command("modprobe", name).Run() == nil
}

// ZFS runs only where the zfs module loads (it is not in Debian's kernel).
func TestExecZFS(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"zpool", "zfs", "mkfs.ext4"}, fs: []string{"ext4"}})
	if !moduleLoads("zfs") {
		t.Skipf("the zfs kernel module does not load on %s", kernelRelease())
	}
	r := newRig(t, "zfs.json", 2, 256, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-a-zfs", gptLinux, "zfs_member")
		r.expectPart(1, 1, "disk-b-zfs", gptLinux, "zfs_member")
		r.expectMount("/", "zfs", "")
		r.expectMount("/nix", "zfs", "")
		r.expectMount("/legacy", "zfs", "")
		r.expectMount("/vol", "ext4", "/dev/zvol/nvtzpool/vol")
		out, err := exec.Command("zpool", "status", "nvtzpool").Output()
		if err != nil || !strings.Contains(string(out), "mirror-0") {
			t.Errorf("nvtzpool is not a mirror: %v\n%s", err, out)
		}
	})
}

// bcachefs runs only where the bcachefs module loads.
func TestExecBcachefs(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"bcachefs"}})
	if !moduleLoads("bcachefs") {
		t.Skipf("the bcachefs kernel module does not load on %s", kernelRelease())
	}
	r := newRig(t, "bcachefs.json", 1, 256, nil)
	r.cycle(func() {
		r.expectPart(0, 1, "disk-main-root", gptLinux, "bcachefs")
		r.expectMount("/", "bcachefs", "")
		r.expectMount("/home", "bcachefs", "")
	})
}

// Without udev there is no /dev/disk/by-diskseq: the script finds the disk
// through sysfs (case 17 of disko's examples names its disk this way).
func TestExecDiskByDiskseq(t *testing.T) {
	skipUnlessReady(t, requirement{tools: []string{"mkfs.ext4"}, fs: []string{"ext4"}})
	r := newRig(t, "bios-boot.json", 1, 128, nil)
	seq, err := os.ReadFile("/sys/class/block/" + filepath.Base(r.loops[0]) + "/diskseq")
	if err != nil {
		t.Skipf("no diskseq in sysfs: %v", err)
	}
	link := "/dev/disk/by-diskseq/" + strings.TrimSpace(string(seq))
	if _, err := os.Stat(link); err == nil {
		t.Skip("udev made the by-diskseq link; this test is about its absence")
	}
	r.l, err = Parse([]byte(strings.Replace(r.layout, r.loops[0], link, 1)))
	if err != nil {
		t.Fatal(err)
	}
	r.cycle(func() {
		r.expectPart(0, 2, "disk-main-root", gptLinux, "ext4")
		r.expectMount("/", "ext4", r.part(0, 2))
	})
}
