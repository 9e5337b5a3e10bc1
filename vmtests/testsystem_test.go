package vmtests

// Tests of the test NixOS system in vmtests/flake: its toplevel interface,
// its disko layouts, switch-to-configuration's refusals, and, per scenario,
// a disk prepared by hand (as nixos-install would) that boots under OVMF to
// the system's sshd with /run/current-system = the toplevel and a clean
// `nix-store --verify --check-contents`.
//
// The host kernel here has no GPT, vfat, dm-crypt or md support, so disks
// are not prepared with losetup -P on the host but inside a helper VM (the
// flake's prep-initrd: the Debian cloud kernel plus sgdisk, mkfs, cryptsetup,
// lvm and mdadm) that runs a per-scenario script from a second disk carrying
// the closure, its registration and the host key.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

const (
	tsFlake    = "./flake"
	tsCPU      = "qemu64,+ssse3,+sse4.1,+sse4.2,+aes,+pclmulqdq,+popcnt"
	tsOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	tsOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// tsScenarios are the configurations of the flake with the facts the tests check.
var tsScenarios = []struct {
	name       string
	rootParam  string   // the root= kernel parameter
	disks      []string // disko disk devices
	bootTested bool     // booted end to end by TestTestSystemBoot
}{
	{"demo", "root=/dev/disk/by-partlabel/disk-main-root", []string{"/dev/vda"}, false},
	{"efi-ext4", "root=/dev/disk/by-partlabel/disk-main-root", []string{"/dev/vda"}, true},
	{"luks-keyfile", "root=/dev/mapper/crypted", []string{"/dev/vda"}, true},
	{"lvm-on-luks", "root=/dev/mapper/vtpool-root", []string{"/dev/vda"}, true},
	{"raid1", "root=/dev/md/raid1", []string{"/dev/vda", "/dev/vdb"}, true},
	{"rescue", "root=/dev/disk/by-partlabel/disk-main-root", []string{"/dev/vda"}, false},
	{"small-ram", "root=/dev/disk/by-partlabel/disk-main-root", []string{"/dev/vda"}, false},
	{"resume", "root=/dev/disk/by-partlabel/disk-main-root", []string{"/dev/vda"}, false},
	{"sudo-user", "root=/dev/disk/by-partlabel/disk-main-root", []string{"/dev/vda"}, false},
	{"extras", "root=/dev/disk/by-partlabel/disk-main-root", []string{"/dev/vda"}, false},
	{"substitute", "root=/dev/disk/by-partlabel/disk-main-root", []string{"/dev/vda"}, false},
}

func tsNeedNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix is not installed (Debian: apt-get install nix-bin)")
	}
}

func tsNixArgs(args ...string) []string {
	return append([]string{
		"--extra-experimental-features", "nix-command flakes",
		"--option", "substituters", "", // no binary cache, and no waiting for one
		"--option", "sandbox", "false", // builders use host tools by absolute path
	}, args...)
}

func tsRun(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tsTail(stderr.String(), 20))
	}
	return stdout.String(), nil
}

func tsTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tsBuild builds flake attributes and returns their store paths in order
// (one nix build per attribute: its --json output does not keep the order).
func tsBuild(ctx context.Context, t *testing.T, attrs ...string) []string {
	t.Helper()
	start := time.Now()
	paths := make([]string, len(attrs))
	for i, attr := range attrs {
		out, err := tsRun(ctx, "nix", tsNixArgs("build", "--no-link", "--json", tsFlake+"#"+attr)...)
		if err != nil {
			t.Fatal(err)
		}
		var results []struct {
			Outputs map[string]string `json:"outputs"`
		}
		if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 || results[0].Outputs["out"] == "" {
			t.Fatalf("nix build --json %s: %v: %q", attr, err, out)
		}
		paths[i] = results[0].Outputs["out"]
	}
	t.Logf("nix build of %d attributes: %s", len(attrs), time.Since(start).Round(time.Millisecond))
	return paths
}

func tsToplevelAttr(scenario string) string {
	return "nixosConfigurations." + scenario + ".config.system.build.toplevel"
}

// TestTestSystemToplevel builds every scenario and checks the toplevel interface.
func TestTestSystemToplevel(t *testing.T) {
	tsNeedNix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	attrs := make([]string, len(tsScenarios))
	for i, s := range tsScenarios {
		attrs[i] = tsToplevelAttr(s.name)
	}
	paths := tsBuild(ctx, t, attrs...)
	seen := map[string]string{}
	for i, s := range tsScenarios {
		top := paths[i]
		t.Run(s.name, func(t *testing.T) {
			if other, dup := seen[top]; dup {
				t.Errorf("toplevel %s is the same as %s's", top, other)
			}
			seen[top] = s.name
			if want := "-nixos-system-" + s.name + "-"; !strings.Contains(top, want) {
				t.Errorf("toplevel %s: name does not carry %q", top, want)
			}
			for _, f := range []string{"init", "kernel", "initrd", "kernel-params", "system", "nixos-version",
				"bin/switch-to-configuration", "sw/bin/nix-store", "sw/bin/sshd"} {
				if _, err := os.Stat(filepath.Join(top, f)); err != nil {
					t.Errorf("toplevel interface: %v", err)
				}
			}
			for _, f := range []string{"init", "bin/switch-to-configuration"} {
				if fi, err := os.Stat(filepath.Join(top, f)); err == nil && fi.Mode()&0o111 == 0 {
					t.Errorf("%s is not executable", f)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(top, "system")); string(got) != "x86_64-linux" {
				t.Errorf("system: got %q, want %q", got, "x86_64-linux")
			}
			params, _ := os.ReadFile(filepath.Join(top, "kernel-params"))
			if !strings.Contains(" "+string(params)+" ", " "+s.rootParam+" ") {
				t.Errorf("kernel-params: got %q, want it to contain %q", params, s.rootParam)
			}
			// The packed nix-store runs without the host's /usr/lib.
			out, err := tsRun(ctx, "env", "-i", filepath.Join(top, "sw/bin/nix-store"), "--version")
			if err != nil || !strings.HasPrefix(out, "nix-store (Nix) ") {
				t.Errorf("packed nix-store --version: got %q, %v", out, err)
			}
			closure, err := tsRun(ctx, "nix", tsNixArgs("path-info", "-r", top)...)
			if err != nil {
				t.Fatal(err)
			}
			n := len(strings.Fields(closure))
			if n < 4 || !strings.Contains(closure, top) {
				t.Errorf("nix path-info -r %s: got %d paths, want the toplevel and its tools, kernel and initrd", top, n)
			}
		})
	}
}

// TestTestSystemDiskoDevices checks that each configuration's disko.devices evaluates to its layout.
func TestTestSystemDiskoDevices(t *testing.T) {
	tsNeedNix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, s := range tsScenarios {
		t.Run(s.name, func(t *testing.T) {
			out, err := tsRun(ctx, "nix", tsNixArgs("eval", "--json", "--apply", nix.DiskoPlain, tsFlake+"#nixosConfigurations."+s.name+".config.disko.devices")...)
			if err != nil {
				t.Fatal(err)
			}
			var devices struct {
				Disk map[string]struct {
					Type    string `json:"type"`
					Device  string `json:"device"`
					Content struct {
						Type       string                     `json:"type"`
						Partitions map[string]json.RawMessage `json:"partitions"`
					} `json:"content"`
				} `json:"disk"`
			}
			if err := json.Unmarshal([]byte(out), &devices); err != nil {
				t.Fatalf("disko.devices: %v", err)
			}
			var got []string
			for _, d := range devices.Disk {
				if d.Type != "disk" || d.Content.Type != "gpt" || len(d.Content.Partitions) == 0 {
					t.Errorf("disk %s: got type %q content %q with %d partitions, want a gpt disk", d.Device, d.Type, d.Content.Type, len(d.Content.Partitions))
				}
				got = append(got, d.Device)
			}
			if !tsSameSet(got, s.disks) {
				t.Errorf("disk devices: got %v, want %v", got, s.disks)
			}
			if !strings.Contains(out, `"mountpoint":"/boot"`) || !strings.Contains(out, `"mountpoint":"/"`) {
				t.Errorf("layout lacks the /boot or / mountpoint: %s", out)
			}
		})
	}
}

func tsSameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestTestSystemSwitchToConfigurationRefuses runs switch-to-configuration in
// chroots whose /boot is not a mounted FAT ESP or that have no system
// profile: it must fail loudly and write nothing.
func TestTestSystemSwitchToConfigurationRefuses(t *testing.T) {
	tsNeedNix(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for chroot and bind mounts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	top := tsBuild(ctx, t, tsToplevelAttr("efi-ext4"))[0]

	cases := []struct {
		name     string
		tmpfsESP bool // mount a tmpfs (not FAT) on /boot
		profile  bool // create the system profile
		want     string
	}{
		{"boot not mounted", false, true, "/boot is not a mount point"},
		{"boot not FAT", true, true, "not a FAT EFI system partition"},
		{"no system profile", false, false, "/nix/var/nix/profiles/system does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range []string{"nix/store", "nix/var/nix/profiles", "boot"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			mount := func(args ...string) {
				if _, err := tsRun(ctx, "mount", args...); err != nil {
					t.Fatal(err)
				}
				target := args[len(args)-1]
				t.Cleanup(func() { _, _ = tsRun(context.Background(), "umount", target) })
			}
			mount("--bind", "-o", "ro", "/nix/store", filepath.Join(root, "nix/store"))
			if c.tmpfsESP {
				mount("-t", "tmpfs", "tmpfs", filepath.Join(root, "boot"))
			}
			if c.profile {
				if err := os.Symlink(top, filepath.Join(root, "nix/var/nix/profiles/system-1-link")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("system-1-link", filepath.Join(root, "nix/var/nix/profiles/system")); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.CommandContext(ctx, "chroot", root, top+"/bin/switch-to-configuration", "boot")
			cmd.Env = []string{"NIXOS_INSTALL_BOOTLOADER=1"}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("switch-to-configuration boot: got %v (%s), want a non-zero exit", err, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("switch-to-configuration boot: got %q, want it to say %q", out, c.want)
			}
			entries, _ := os.ReadDir(filepath.Join(root, "boot"))
			if len(entries) != 0 {
				t.Errorf("/boot after the refusal: got %d entries, want none", len(entries))
			}
		})
	}
}

// tsPrepScripts partition and fill the scenario's disks in the prep VM
// (/prep is the helper disk); each leaves the new root mounted on /mnt and
// the ESP on /mnt/boot for tsInstallScript.
var tsPrepScripts = map[string]string{
	"efi-ext4": `
sgdisk -n1:1M:+256M -t1:ef00 -c1:disk-main-ESP -n2:0:0 -t2:8300 -c2:disk-main-root /dev/vda >/dev/null
waitdev /dev/vda2
mkfs.vfat -F 32 -n ESP /dev/vda1 >/dev/null 2>&1
mkfs.ext4 -q -F -L nixos /dev/vda2
mount /dev/vda2 /mnt
`,
	"luks-keyfile": `
sgdisk -n1:1M:+256M -t1:ef00 -c1:disk-main-ESP -n2:0:0 -t2:8309 -c2:disk-main-luks /dev/vda >/dev/null
waitdev /dev/vda2
mkfs.vfat -F 32 -n ESP /dev/vda1 >/dev/null 2>&1
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /prep/secret.key /dev/vda2
cryptsetup open --key-file /prep/secret.key /dev/vda2 crypted
mkfs.ext4 -q -F -L nixos /dev/mapper/crypted
mount /dev/mapper/crypted /mnt
`,
	"lvm-on-luks": `
sgdisk -n1:1M:+256M -t1:ef00 -c1:disk-main-ESP -n2:0:0 -t2:8309 -c2:disk-main-luks /dev/vda >/dev/null
waitdev /dev/vda2
mkfs.vfat -F 32 -n ESP /dev/vda1 >/dev/null 2>&1
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /prep/secret.key /dev/vda2
cryptsetup open --key-file /prep/secret.key /dev/vda2 crypted
lvm pvcreate -q /dev/mapper/crypted
lvm vgcreate -q vtpool /dev/mapper/crypted
lvm lvcreate -q -y -Zn -L 128M -n swap vtpool
lvm lvcreate -q -y -Zn -l 100%FREE -n root vtpool
lvm vgmknodes
mkswap /dev/mapper/vtpool-swap >/dev/null
mkfs.ext4 -q -F -L nixos /dev/mapper/vtpool-root
mount /dev/mapper/vtpool-root /mnt
`,
	"raid1": `
sgdisk -n1:1M:+256M -t1:ef00 -c1:disk-one-ESP -n2:0:0 -t2:fd00 -c2:disk-one-raid /dev/vda >/dev/null
sgdisk -n1:1M:0 -t1:fd00 -c1:disk-two-raid /dev/vdb >/dev/null
waitdev /dev/vda2
waitdev /dev/vdb1
mkfs.vfat -F 32 -n ESP /dev/vda1 >/dev/null 2>&1
mdadm --create /dev/md/raid1 --run --level=1 --raid-devices=2 --metadata=1.2 --homehost=any --assume-clean /dev/vda2 /dev/vdb1
waitdev /dev/md/raid1
mkfs.ext4 -q -F -L nixos /dev/md/raid1
mount /dev/md/raid1 /mnt
`,
}

// tsInstallScript does what nixos-install does, by hand: closure into the
// store, registration loaded by the system's own nix-store, the system
// profile, the host key, and the bootloader through switch-to-configuration
// in a chroot with /dev, /proc and /sys.
const tsInstallScript = `
top=$(cat /prep/toplevel)
mkdir -p /mnt/boot
mount /dev/vda1 /mnt/boot
mkdir -p /mnt/nix/store /mnt/nix/var/nix/profiles /mnt/etc/ssh /mnt/dev /mnt/proc /mnt/sys
cp -a /prep/store/. /mnt/nix/store/
mount --bind /dev /mnt/dev
mount -t proc proc /mnt/proc
mount -t sysfs sysfs /mnt/sys
chroot /mnt "$top/sw/bin/nix-store" --load-db < /prep/registration
ln -s "$top" /mnt/nix/var/nix/profiles/system-1-link
ln -s system-1-link /mnt/nix/var/nix/profiles/system
cp /prep/ssh_host_ed25519_key /mnt/etc/ssh/
chmod 0600 /mnt/etc/ssh/ssh_host_ed25519_key
NIXOS_INSTALL_BOOTLOADER=1 chroot /mnt /nix/var/nix/profiles/system/bin/switch-to-configuration boot
ls -R /mnt/boot
umount /mnt/dev /mnt/proc /mnt/sys /mnt/boot /mnt
`

const tsPrepFunctions = `
waitdev() {
	i=0
	until [ -b "$1" ]; do
		i=$((i + 1))
		[ $i -lt 100 ] || { echo "$1 did not appear"; exit 1; }
		sleep 0.1
	done
}
`

// TestTestSystemBoot installs each scenario onto blank disks by hand, boots
// them under OVMF and checks the running system over SSH.
func TestTestSystemBoot(t *testing.T) {
	tsNeedNix(t)
	for _, tool := range []string{"qemu-system-x86_64", "ssh", "ssh-keygen", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	for _, f := range []string{tsOVMFCode, tsOVMFVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("OVMF firmware missing (Debian: apt-get install ovmf): %v", err)
		}
	}
	for _, s := range tsScenarios {
		if !s.bootTested {
			continue
		}
		t.Run(s.name, func(t *testing.T) { tsBootScenario(t, s.name, len(s.disks)) })
	}
}

func tsBootScenario(t *testing.T, scenario string, ndisks int) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	paths := tsBuild(ctx, t, tsToplevelAttr(scenario), "packages.x86_64-linux.prep-initrd")
	top, prepInitrd := paths[0], paths[1]
	dir := t.TempDir()

	// The helper disk: closure, registration, host key, LUKS key and the script.
	closureOut, err := tsRun(ctx, "nix", tsNixArgs("path-info", "-r", top)...)
	if err != nil {
		t.Fatal(err)
	}
	closure := strings.Fields(closureOut)
	prep := filepath.Join(dir, "prep")
	if err := os.MkdirAll(filepath.Join(prep, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := tsRun(ctx, "cp", append(append([]string{"-a"}, closure...), filepath.Join(prep, "store"))...); err != nil {
		t.Fatal(err)
	}
	reg, err := tsRun(ctx, "nix-store", append([]string{"--dump-db"}, closure...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tsRun(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", filepath.Join(prep, "ssh_host_ed25519_key")); err != nil {
		t.Fatal(err)
	}
	hostPub, err := os.ReadFile(filepath.Join(prep, "ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	passphrase := hex.EncodeToString(secret) // the key file's content; no trailing newline
	files := map[string]string{
		"registration": reg,
		"toplevel":     top,
		"secret.key":   passphrase,
		"prepare.sh":   tsPrepFunctions + tsPrepScripts[scenario] + tsInstallScript,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(prep, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	prepImg := filepath.Join(dir, "prep.img")
	if err := os.WriteFile(prepImg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(prepImg, 1<<30); err != nil {
		t.Fatal(err)
	}
	if _, err := tsRun(ctx, "mkfs.ext4", "-q", "-L", "nvprep", "-d", prep, prepImg); err != nil {
		t.Fatal(err)
	}
	var disks []string
	for i := 0; i < ndisks; i++ {
		d := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		if err := os.WriteFile(d, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(d, 2<<30); err != nil {
			t.Fatal(err)
		}
		disks = append(disks, d)
	}

	// Prepare the disks in the helper VM.
	start := time.Now()
	prepVM := tsStartQEMU(ctx, t, dir, "prep", []string{
		"-kernel", top + "/kernel", "-initrd", prepInitrd + "/initrd",
		"-append", "console=ttyS0 panic=-1 loglevel=4",
	}, append(disks, prepImg), false)
	if err := prepVM.wait(ctx); err != nil {
		t.Fatalf("prep VM: %v\n%s", err, tsTail(prepVM.console(), 40))
	}
	if log := prepVM.console(); !strings.Contains(log, "PREP-RESULT: exit 0") {
		t.Fatalf("preparing the disks failed:\n%s", tsTail(log, 40))
	}
	t.Logf("disks prepared in %s", time.Since(start).Round(time.Millisecond))

	// Boot the installed disks under OVMF.
	start = time.Now()
	vm := tsStartQEMU(ctx, t, dir, "installed", nil, disks, true)
	if strings.Contains(scenario, "luks") {
		if err := vm.expect(ctx, "Enter passphrase for crypted"); err != nil {
			t.Fatal(err)
		}
		if err := vm.typeLine(passphrase); err != nil {
			t.Fatal(err)
		}
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", vm.port, strings.TrimSpace(string(hostPub)))
	if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(tsFlake, "keys", "snakeoil_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	ssh := func(cmd string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return tsRun(ctx, "ssh", "-o", "ConnectTimeout=5", "-p", strconv.Itoa(vm.port), "-i", keyFile,
			"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile="+knownHosts, "-o", "LogLevel=ERROR", "root@127.0.0.1", cmd)
	}
	for {
		if _, err = ssh("true"); err == nil {
			break
		}
		if ctx.Err() != nil || vm.exited() {
			t.Fatalf("ssh into the installed system: %v\n%s", err, tsTail(vm.console(), 40))
		}
		time.Sleep(time.Second)
	}
	t.Logf("OVMF boot to ssh: %s", time.Since(start).Round(time.Millisecond))

	checks := []struct {
		cmd, want string
	}{
		{"readlink /run/current-system", top},
		{"hostname", scenario},
		{"sed -n 's/^ID=//p' /etc/os-release", "nixos"},
		{"nix-store --verify --check-contents 2>&1 && echo verified", "verified"},
		{"nix-store --check-validity " + strings.Join(closure, " ") + " && echo valid", "valid"},
		{"cat /sys/firmware/efi/fw_platform_size", "64"},
	}
	// What the root file system is mounted from, by its device number.
	rootDev := "/sys/dev/block/$(awk '$5 == \"/\" { print $3 }' /proc/self/mountinfo)"
	switch scenario {
	case "luks-keyfile":
		checks = append(checks, struct{ cmd, want string }{"cat " + rootDev + "/dm/name", "crypted"})
	case "lvm-on-luks":
		checks = append(checks, struct{ cmd, want string }{"cat " + rootDev + "/dm/name", "vtpool-root"},
			struct{ cmd, want string }{"ls /sys/block/$(basename $(readlink -f " + rootDev + "))/slaves", "dm-0"})
	case "raid1":
		checks = append(checks, struct{ cmd, want string }{"cat " + rootDev + "/md/level", "raid1"},
			struct{ cmd, want string }{"cat " + rootDev + "/md/degraded", "0"})
	}
	for _, c := range checks {
		out, err := ssh(c.cmd)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if got := lines[len(lines)-1]; got != c.want {
			t.Errorf("%s: got %q, want %q", c.cmd, out, c.want)
		}
	}
	if strings.Contains(vm.console(), passphrase) {
		t.Errorf("the LUKS passphrase appears on the console log")
	}
	for _, d := range disks {
		found, err := testutil.FileContains(d, []byte(passphrase))
		if err != nil {
			t.Fatal(err)
		}
		if found {
			t.Errorf("the LUKS passphrase is written on %s", filepath.Base(d))
		}
	}
}

// tsQEMU is a minimal QEMU runner (TCG, user networking restricted to a
// forward of 127.0.0.1:port to the guest's sshd) whose serial console is
// logged to a file and accepts typed input through a unix socket.
type tsQEMU struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	log    string
	serial net.Conn
	port   int
	seen   int
}

func tsStartQEMU(ctx context.Context, t *testing.T, dir, name string, boot, disks []string, uefi bool) *tsQEMU {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	sock := filepath.Join(dir, name+".serial")
	q := &tsQEMU{log: filepath.Join(dir, name+".log"), port: port, done: make(chan struct{})}
	args := []string{"-accel", "tcg", "-cpu", tsCPU, "-smp", "1", "-m", "512", "-nodefaults",
		"-display", "none", "-no-reboot",
		"-chardev", "socket,id=ser0,path=" + sock + ",server=on,wait=off,logfile=" + q.log,
		"-serial", "chardev:ser0",
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", port),
		"-device", "virtio-net-pci,netdev=n0,romfile=",
	}
	if uefi {
		vars := filepath.Join(dir, name+"-vars.fd")
		data, err := os.ReadFile(tsOVMFVars)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vars, data, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+tsOVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	args = append(args, boot...)
	for i, d := range disks {
		dev := fmt.Sprintf("virtio-blk-pci,drive=d%d", i)
		if uefi {
			dev += fmt.Sprintf(",bootindex=%d", i)
		}
		args = append(args, "-drive", fmt.Sprintf("file=%s,if=none,id=d%d,format=raw,cache=unsafe", d, i), "-device", dev)
	}
	q.cmd = exec.Command("qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	q.cmd.Stderr = &stderr
	if err := q.cmd.Start(); err != nil {
		t.Fatalf("qemu-system-x86_64: %v", err)
	}
	go func() {
		q.err = q.cmd.Wait()
		if q.err != nil {
			q.err = fmt.Errorf("qemu-system-x86_64: %w: %s", q.err, stderr.String())
		}
		close(q.done)
	}()
	t.Cleanup(func() {
		if q.serial != nil {
			q.serial.Close()
		}
		if !q.exited() {
			_ = q.cmd.Process.Kill()
			<-q.done
		}
		if t.Failed() {
			t.Logf("%s console tail:\n%s", name, tsTail(q.console(), 30))
		}
	})
	// Connect to the serial socket (QEMU creates it at start) and drain it.
	for i := 0; ; i++ {
		if q.serial, err = net.Dial("unix", sock); err == nil {
			break
		}
		if i > 100 || q.exited() {
			t.Fatalf("serial console socket of %s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	go func() { _, _ = io.Copy(io.Discard, q.serial) }()
	return q
}

func (q *tsQEMU) console() string {
	b, _ := os.ReadFile(q.log)
	return string(b)
}

func (q *tsQEMU) exited() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}

func (q *tsQEMU) wait(ctx context.Context) error {
	select {
	case <-q.done:
		return q.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// expect waits for s on the console after the previous match.
func (q *tsQEMU) expect(ctx context.Context, s string) error {
	for {
		log := q.console()
		if i := strings.Index(log[q.seen:], s); i >= 0 {
			q.seen += i + len(s)
			return nil
		}
		if q.exited() || ctx.Err() != nil {
			return fmt.Errorf("console: %q did not appear:\n%s", s, tsTail(log, 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// typeLine types s and Enter on the serial console.
func (q *tsQEMU) typeLine(s string) error {
	if _, err := q.serial.Write([]byte(s + "\r")); err != nil {
		return fmt.Errorf("typing on the serial console: %w", err)
	}
	return nil
}
