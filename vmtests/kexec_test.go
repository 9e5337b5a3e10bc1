package vmtests

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/testutil"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
	"github.com/nixos-via/nixos-via/vmtests/vm"
)

// kexecIntoInstaller uploads the installer tarball into a running provider
// and starts kexec/run through sudo as the non-root user, as nixos-anywhere
// does. It returns when run has returned, and the run's output.
func kexecIntoInstaller(t *testing.T, ctx context.Context, v *vm.VM, keys *testimg.Keys, tarball string) string {
	t.Helper()
	user, err := v.SSH(testimg.User, keys.ClientKeyFile, keys.HostKey.PublicLine)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if _, err := user.Run(ctx, "mkdir -p ~/kexec && cd ~/kexec && tar -xzf -", f); err != nil {
		t.Fatal(err)
	}
	t.Logf("upload + unpack of the %d byte tarball: %s", testutil.FileSize(t, tarball), time.Since(start).Round(100*time.Millisecond))
	start = time.Now()
	out, err := user.Run(ctx, "sudo -S -p '' ~/kexec/kexec/run 2>&1", strings.NewReader(testimg.UserPassword+"\n"))
	if err != nil {
		t.Fatalf("kexec/run: %v\n%s", err, out)
	}
	t.Logf("kexec/run (collect, append cpio, kexec --load) took %s", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(out, "machine will boot into nixos") {
		t.Fatalf("kexec/run output lacks the marker line:\n%s", out)
	}
	return out
}

func TestHarnessKexecInstaller(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	keys := testimg.TestKeys(t)
	inst := testimg.Installer(t)
	t.Logf("installer tarball: %d bytes (%.1f MiB)", inst.Bytes, float64(inst.Bytes)/(1<<20))
	if inst.Bytes > 40<<20 {
		t.Errorf("installer tarball is %d bytes, over 40 MiB", inst.Bytes)
	}
	v, root, upAfter := bootProvider(t, ctx, keys, 512, []vm.Disk{{Size: 2 << 30}})
	t.Logf("provider: QEMU start to first ssh: %s", upAfter.Round(100*time.Millisecond))

	// State the installer must carry over: a static address and route
	// (TEST-NET ranges, inside the restricted guest only), machine-id and
	// DNS. root's own key file is removed, so root's login in the installer
	// can only come from the sudo user's authorized_keys.
	setup := "ip addr add 192.0.2.10/24 dev eth0 && ip route add 198.51.100.0/24 via 192.0.2.1 dev eth0 && " +
		"echo 0123456789abcdef0123456789abcdef > /etc/machine-id && echo 'nameserver 10.0.2.3' > /etc/resolv.conf && " +
		"rm /root/.ssh/authorized_keys"
	if _, err := root.Run(ctx, setup, nil); err != nil {
		t.Fatal(err)
	}

	kexecIntoInstaller(t, ctx, v, keys, inst.Path)
	ranAt := time.Now()
	if err := v.ExpectString(ctx, "nixos-via installer ready"); err != nil {
		t.Fatal(err)
	}
	// Same forwarded port, same known_hosts file: the host key must match.
	if err := root.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kexec/run returned to installer ssh: %s (includes run's 6 s delay before kexec -e)", time.Since(ranAt).Round(100*time.Millisecond))

	f := runFacts(t, ctx, testimg.Agent(t), root)
	if !f.IsNixOS || !f.IsInstaller || !f.IsRoot || !hasDisk(f, "vda") {
		t.Errorf("nixos-via facts on the installer = %+v; want a NixOS installer, root, disk vda", *f)
	}
	checkStart := time.Now()
	defer func() { t.Logf("installer checks took %s", time.Since(checkStart).Round(100*time.Millisecond)) }()
	checks := []struct {
		name, cmd, want string
	}{
		{"os-release", ". /etc/os-release; echo $ID $VARIANT_ID", "nixos installer"},
		{"static address", "ip -4 -o addr show dev eth0 | grep -o '192.0.2.10/24'", "192.0.2.10/24"},
		{"dhcp address", "ip -4 -o addr show dev eth0 | grep -o '10.0.2.15/24'", "10.0.2.15/24"},
		{"static route", "ip -4 route show 198.51.100.0/24", "198.51.100.0/24 via 192.0.2.1 dev eth0"},
		{"machine-id", "cat /etc/machine-id", "0123456789abcdef0123456789abcdef"},
		{"dns", "grep nameserver /etc/resolv.conf | head -n1", "nameserver 10.0.2.3"},
		{"host keys restored", "ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'", "3"}, // the provider's rsa, ecdsa, ed25519
	}
	for _, c := range checks {
		out, err := root.Run(ctx, c.cmd, nil)
		if got := strings.TrimSpace(out); err != nil || !strings.Contains(got, c.want) {
			t.Errorf("installer %s: `%s` = %q, %v; want %q", c.name, c.cmd, got, err, c.want)
		}
	}
	// Every tool runs (its libraries are all there) and the kernel loads
	// what the disk tools need on demand.
	tools := []string{"sgdisk --version", "parted --version", "sfdisk --version", "blkid -V", "lsblk --version",
		"wipefs --version", "mount --version", "cryptsetup --version", "lvm version", "mdadm --version",
		"mke2fs -V", "mkfs.fat --help", "mkfs.btrfs --version", "mkfs.xfs -V", "kmod --version", "zstd --version",
		"/usr/lib/openssh/sftp-server -h", "nixos-via version"}
	// One round trip: each tool's output is dropped when it succeeds.
	// sftp-server -h and mkfs.fat --help print usage and exit non-zero, so
	// they are checked for a loader error instead.
	var probe strings.Builder
	for _, tool := range tools {
		fmt.Fprintf(&probe, "out=$(%s 2>&1) || case \"$out\" in *sage*) ;; *) echo \"FAIL %s: $out\" ;; esac; ", tool, tool)
	}
	if out, err := root.Run(ctx, probe.String(), nil); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("installer tools: %v\n%s", err, out)
	}
	script := "set -e; export DM_DISABLE_UDEV=1; sgdisk -n1:1M:+64M -t1:ef00 -n2:0:0 -t2:8309 /dev/vda >/dev/null; " +
		"mkfs.vfat -F 32 /dev/vda1 >/dev/null; printf key > /tmp/k; " +
		"cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /tmp/k /dev/vda2; " +
		"cryptsetup open --key-file /tmp/k /dev/vda2 root; mkfs.btrfs -q /dev/mapper/root >/dev/null; " +
		"mount /dev/mapper/root /mnt; mkdir /mnt/boot; mount /dev/vda1 /mnt/boot; findmnt -n -o FSTYPE /mnt; findmnt -n -o FSTYPE /mnt/boot; " +
		"umount /mnt/boot /mnt; cryptsetup close root"
	if out, err := root.Run(ctx, script, nil); err != nil || strings.Fields(out)[0] != "btrfs" {
		t.Errorf("installer disk tools: %q, %v; want btrfs on LUKS and vfat mounted", out, err)
	}
}

// TestHarnessKexecMemorySweep finds the smallest provider RAM at which
// the kexec into the installer still works. It is slow, so it only runs
// when NIXOS_VIA_KEXEC_SWEEP lists the sizes in MiB, e.g. "384,256,224".
func TestHarnessKexecMemorySweep(t *testing.T) {
	sizes := os.Getenv("NIXOS_VIA_KEXEC_SWEEP")
	if sizes == "" {
		t.Skip("set NIXOS_VIA_KEXEC_SWEEP=384,256,... to run the RAM sweep")
	}
	keys := testimg.TestKeys(t)
	inst := testimg.Installer(t)
	for _, s := range strings.Split(sizes, ",") {
		var mem int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &mem); err != nil || mem < 64 {
			t.Fatalf("NIXOS_VIA_KEXEC_SWEEP: bad size %q", s)
		}
		t.Run(fmt.Sprintf("%dMiB", mem), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			v, root, _ := bootProvider(t, ctx, keys, mem, nil)
			kexecIntoInstaller(t, ctx, v, keys, inst.Path)
			ranAt := time.Now()
			if err := v.ExpectString(ctx, "nixos-via installer ready"); err != nil {
				t.Fatal(err)
			}
			if err := root.WaitUp(ctx); err != nil {
				t.Fatal(err)
			}
			out, _ := root.Run(ctx, "free -m | sed -n 2p", nil)
			t.Logf("-m %d: kexec ok, run to installer ssh %s; installer memory: %s", mem, time.Since(ranAt).Round(100*time.Millisecond), strings.TrimSpace(out))
		})
	}
}
