package vmtests

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

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
	if _, err := user.Run(ctx, "mkdir -p ~/kexec && cd ~/kexec && cat > installer.tar.gz && tar -xzf installer.tar.gz && rm installer.tar.gz", f); err != nil {
		t.Fatal(err)
	}
	t.Logf("upload + unpack of the %d byte tarball: %s", fileSize(t, tarball), time.Since(start).Round(100*time.Millisecond))
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

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
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

	checks := []struct {
		name, cmd, want string
	}{
		{"os-release", ". /etc/os-release; echo $ID $VARIANT_ID", "nixos installer"},
		{"static address", "ip -4 -o addr show dev eth0 | grep -o '192.0.2.10/24'", "192.0.2.10/24"},
		{"dhcp address", "ip -4 -o addr show dev eth0 | grep -o '10.0.2.15/24'", "10.0.2.15/24"},
		{"static route", "ip -4 route show 198.51.100.0/24", "198.51.100.0/24 via 192.0.2.1 dev eth0"},
		{"machine-id", "cat /etc/machine-id", "0123456789abcdef0123456789abcdef"},
		{"dns", "grep nameserver /etc/resolv.conf | head -n1", "nameserver 10.0.2.3"},
		{"host keys restored", "ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'", "1"},
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
	for _, tool := range tools {
		if out, err := root.Run(ctx, tool+" >/dev/null 2>&1 || "+tool, nil); err != nil {
			// sftp-server -h and mkfs.fat --help exit non-zero but print usage.
			if !strings.Contains(tool, "-h") && !strings.Contains(tool, "--help") {
				t.Errorf("installer: %s: %v: %s", tool, err, out)
			}
		}
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
