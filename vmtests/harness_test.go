package vmtests

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/vmtests/testimg"
	"github.com/nixos-via/nixos-via/vmtests/vm"
)

// bootProvider starts the provider VM and waits for root's SSH.
func bootProvider(t *testing.T, ctx context.Context, keys *testimg.Keys, memMiB int, disks []vm.Disk) (*vm.VM, *vm.SSH, time.Duration) {
	t.Helper()
	p := testimg.Provider(t, keys, "")
	v := vm.Start(t, vm.Config{Name: "provider", Kernel: p.Kernel, Initrd: p.Initrd, Cmdline: p.Cmdline, MemoryMiB: memMiB, Disks: disks})
	if err := v.ExpectString(ctx, "[init] sshd started"); err != nil {
		t.Fatal(err)
	}
	root, err := v.SSH("root", keys.ClientKeyFile, keys.HostKey.PublicLine)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	return v, root, time.Since(v.Started)
}

func TestHarnessProviderBoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	keys := testimg.TestKeys(t)
	v, root, upAfter := bootProvider(t, ctx, keys, 512, []vm.Disk{{Size: 1 << 30, Serial: "disk0"}})
	t.Logf("provider: QEMU start to first ssh: %s", upAfter.Round(100*time.Millisecond))

	out, err := root.Run(ctx, ". /etc/os-release; echo $ID $VARIANT_ID; id -u; cat /sys/block/vda/size; ip --json -4 addr show dev eth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("provider answered %q, want 4 lines", out)
	}
	if got, want := lines[0], "debian nixos-via-provider"; got != want {
		t.Errorf("os-release ID VARIANT_ID = %q, want %q", got, want)
	}
	if got, want := lines[1], "0"; got != want {
		t.Errorf("root id -u = %q, want %q", got, want)
	}
	if got, want := lines[2], "2097152"; got != want { // 1 GiB in 512-byte sectors
		t.Errorf("/sys/block/vda/size = %q, want %q", got, want)
	}
	if !strings.Contains(lines[3], `"local":"10.0.2.15"`) {
		t.Errorf("eth0 has no DHCP address 10.0.2.15: %s", lines[3])
	}

	// The non-root user reaches root through sudo with its password only.
	user, err := v.SSH(testimg.User, keys.ClientKeyFile, keys.HostKey.PublicLine)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := user.Run(ctx, "id -un; sudo -S -p '' id -u", strings.NewReader(testimg.UserPassword+"\n")); err != nil || out != testimg.User+"\n0\n" {
		t.Errorf("sudo with the password: %q, %v; want %q", out, err, testimg.User+"\n0\n")
	}
	if out, err := user.Run(ctx, "sudo -k; sudo -S -p '' id -u", strings.NewReader("wrong\n")); err == nil {
		t.Errorf("sudo with a wrong password succeeded: %q", out)
	}

	// The real CLI reads the provider: a Debian-like host, not an
	// installer, reached as a sudo user.
	agent := testimg.Agent(t)
	f := runFacts(t, ctx, agent, user)
	if f.OSID != "debian" || f.IsInstaller || f.IsNixOS || f.User != testimg.User || f.IsRoot || f.Escalation != "sudo" || !hasDisk(f, "vda") {
		t.Errorf("nixos-via facts on the provider = %+v; want osId debian, no installer, user %s via sudo, disk vda", *f, testimg.User)
	}

	// A client that expects another host key is refused: the known_hosts
	// check is real, which the kexec test relies on.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(pub)
	impostor, err := v.SSH("root", keys.ClientKeyFile, string(ssh.MarshalAuthorizedKey(other)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := impostor.WaitUp(wctx); err == nil || !strings.Contains(err.Error(), "host key") {
		t.Errorf("ssh expecting another host key: %v, want a host key mismatch", err)
	}

	// Clean shutdown: the guest powers off and QEMU exits by itself.
	if _, err := root.Run(ctx, "poweroff", nil); err != nil {
		t.Fatal(err)
	}
	wctx2, wcancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel2()
	if err := v.Wait(wctx2); err != nil {
		t.Errorf("QEMU after poweroff: %v", err)
	}
}

// TestHarnessUEFIBoot boots the provider kernel through OVMF (the kernel's
// EFI stub) with a private copy of the vars file, as the install
// scenarios boot their disks. The extra kernel parameter shows how tests
// get a provider that refuses kexec_load.
func TestHarnessUEFIBoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	keys := testimg.TestKeys(t)
	p := testimg.Provider(t, keys, "sysctl.kernel.kexec_load_disabled=1")
	v := vm.Start(t, vm.Config{Name: "uefi", UEFI: true, Kernel: p.Kernel, Initrd: p.Initrd, Cmdline: p.Cmdline,
		Disks: []vm.Disk{{Size: 64 << 20, Format: "raw", BootIndex: 0}}})
	root, err := v.SSH("root", keys.ClientKeyFile, keys.HostKey.PublicLine)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("OVMF + EFI stub to first ssh: %s", time.Since(v.Started).Round(100*time.Millisecond))
	out, err := root.Run(ctx, "test -d /sys/firmware/efi && echo efi; cat /sys/block/vda/size /proc/sys/kernel/kexec_load_disabled", nil)
	if err != nil || out != "efi\n131072\n1\n" {
		t.Errorf("UEFI guest: %q, %v; want efi, a 64 MiB vda and kexec_load_disabled=1", out, err)
	}
}
