// Package e2e installs the test NixOS systems of vmtests/flake into QEMU
// VMs through the real nixos-via command line: a provider VM (a generic
// Linux host booted by OVMF from its own small disk) is kexec'd into the
// installer, partitioned, installed and rebooted, and must then boot the
// installed system from its own disk under OVMF.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/images"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
	"github.com/nixos-via/nixos-via/vmtests/vm"
)

// flakeDir is vmtests/flake, next to this package.
func flakeDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	dir, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "flake"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// world is what every scenario needs: keys, images, the agent.
type world struct {
	keys      *testimg.Keys
	provDisk  string   // raw provider disk image (ESP with systemd-boot + provider)
	installer string   // kexec tarball
	agent     string   // static nixos-via
	flake     string   // path:... reference of vmtests/flake
	hostKeys  []string // the provider's public host keys ("TYPE BASE64")
}

func setup(t *testing.T) *world {
	t.Helper()
	if err := vm.Available(); err != nil {
		t.Skipf("no VMs here: %v", err)
	}
	for _, tool := range []string{"nix", "mkfs.vfat", "mcopy", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s (run vmtests/setup.sh)", tool)
		}
	}
	keys := testimg.TestKeys(t)
	// The test systems authorize the snakeoil key (vmtests/flake/keys): the
	// provider gets the same one, so one key opens every stage.
	snake := filepath.Join(t.TempDir(), "snakeoil")
	priv, err := os.ReadFile(filepath.Join(flakeDir(t), "keys", "snakeoil_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snake, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(flakeDir(t), "keys", "snakeoil_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	keys.ClientKeyFile, keys.ClientPub = snake, strings.TrimSpace(string(pub))
	prov := testimg.Provider(t, keys, "")
	inst := testimg.Installer(t)
	var hostKeys []string
	listed, err := os.ReadFile(filepath.Join(filepath.Dir(prov.Kernel), images.HostKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(listed)), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			hostKeys = append(hostKeys, f[0]+" "+f[1])
		}
	}
	return &world{keys: keys, provDisk: providerDisk(t, prov.Kernel, prov.Initrd, prov.Cmdline),
		installer: inst.Path, agent: testimg.Agent(t), flake: "path:" + flakeDir(t), hostKeys: hostKeys}
}

// providerDisk is the provider's own boot disk (ESP + systemd-boot), so
// that one QEMU process under OVMF boots the provider first and, once the
// target disk (first in the boot order) has a bootloader, the installed system.
func providerDisk(t *testing.T, kernel, initrd, cmdline string) string {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "provider-disk.qcow2") // the harness's overlays want qcow2
	if err := images.BuildBootDisk(t.Context(), disk, kernel, initrd, cmdline); err != nil {
		t.Fatal(err)
	}
	return disk
}

// machine is one provider VM with its target disks.
type machine struct {
	v          *vm.VM
	port       int // where nixos-via connects: the VM's forward, or a proxy in front
	knownHosts string
	hostLine   string
}

// boot starts a VM under OVMF with targets blank disks (vda, vdb, ...)
// first in the boot order and the provider disk last.
func (w *world) boot(t *testing.T, name string, targets int, memMiB int) *machine {
	t.Helper()
	return w.bootWith(t, name, targets, memMiB, false)
}

// bootWith can give the test a keyboard on the serial console. Target
// disks are raw files, so a test can search them for secrets.
func (w *world) bootWith(t *testing.T, name string, targets int, memMiB int, consoleInput bool) *machine {
	t.Helper()
	return w.start(t, vm.Config{Name: name, MemoryMiB: memMiB, ConsoleInput: consoleInput}, targets)
}

// bootWithForwards also forwards the guest ports from the same ports here.
func (w *world) bootWithForwards(t *testing.T, name string, targets int, memMiB int, ports []int) *machine {
	t.Helper()
	return w.start(t, vm.Config{Name: name, MemoryMiB: memMiB, Forwards: ports}, targets)
}

// start boots cfg under OVMF with the target disks and the provider disk.
func (w *world) start(t *testing.T, cfg vm.Config, targets int) *machine {
	t.Helper()
	var disks []vm.Disk
	for i := 0; i < targets; i++ {
		disks = append(disks, vm.Disk{Size: 3 << 30, Format: "raw", BootIndex: i, Serial: fmt.Sprintf("target%d", i)})
	}
	disks = append(disks, vm.Disk{Path: w.provDisk, Overlay: true, BootIndex: targets})
	cfg.UEFI, cfg.Disks, cfg.Timeout = true, disks, 20*time.Minute
	v := vm.Start(t, cfg)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s\n", v.SSHPort, w.keys.HostKey.PublicLine)
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return &machine{v: v, port: v.SSHPort, knownHosts: kh, hostLine: line}
}

// nixosVia runs the CLI in-process and returns its exit code and output.
func nixosVia(t *testing.T, ctx context.Context, args ...string) (int, string) {
	t.Helper()
	return nixosViaEnv(t, ctx, nil, args...)
}

// mustSucceed runs nixos-via against m (with env, which may be nil) and
// stops the test, showing the host's console, unless it exits 0. what names
// the run in the message ("" for the only one).
func mustSucceed(t *testing.T, ctx context.Context, m *machine, what string, env map[string]string, args ...string) string {
	t.Helper()
	code, out := nixosViaEnv(t, ctx, env, args...)
	if code != 0 {
		if what != "" {
			what += ": "
		}
		t.Fatalf("%sexit %d\n%s\n--- console ---\n%s", what, code, out, m.v.ConsoleTail(60))
	}
	return out
}

func (w *world) installArgs(m *machine, scenario string, extra ...string) []string {
	args := []string{
		"--flake", w.flake + "#" + scenario,
		"--kexec", w.installer, "--agent", w.agent,
		"-i", w.keys.ClientKeyFile, "--ssh-option", "UserKnownHostsFile=" + m.knownHosts,
		"--option", "substituters", "",
		"--timeout-kexec", "4m", "--timeout-reboot", "4m", "--yes",
	}
	args = append(args, extra...)
	return append(args, fmt.Sprintf("root@127.0.0.1:%d", m.port))
}

// dialInstalled connects to the installed system with the known_hosts the
// install left behind (it must hold the new system's key now).
func dialInstalled(t *testing.T, ctx context.Context, w *world, m *machine) *target.Conn {
	t.Helper()
	c, err := target.Dial(ctx, target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", m.port),
		IdentityFiles: []string{w.keys.ClientKeyFile}, KnownHostsFiles: []string{m.knownHosts},
		StrictHostKeyChecking: target.StrictYes, SSHConfigFile: "none", ConnectTimeout: 20 * time.Second}, t.TempDir())
	if err != nil {
		t.Fatalf("connect to the installed system with the recorded host key: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitUpAcceptNew waits for the installed system and logs in as root,
// taking whatever host key it has (a known_hosts of its own).
func waitUpAcceptNew(t *testing.T, ctx context.Context, w *world, m *machine) *target.Conn {
	t.Helper()
	res, err := target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", m.port),
		IdentityFiles: []string{w.keys.ClientKeyFile}, KnownHostsFiles: []string{filepath.Join(t.TempDir(), "known_hosts")},
		StrictHostKeyChecking: target.StrictAcceptNew, SSHConfigFile: "none", ConnectTimeout: 20 * time.Second}.Resolve(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := target.WaitUp(ctx, res, t.TempDir(), 3*time.Minute, 2*time.Second)
	if err != nil {
		t.Fatalf("wait for the installed system: %v\n--- console ---\n%s", err, m.v.ConsoleTail(40))
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func run(t *testing.T, ctx context.Context, c *target.Conn, cmd string) string {
	t.Helper()
	out, err := c.Output(ctx, cmd, nil)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return strings.TrimSpace(string(out))
}

// checkInstalled asserts what every scenario must show on the booted system.
func checkInstalled(t *testing.T, ctx context.Context, w *world, m *machine, scenario, output string) {
	t.Helper()
	c := dialInstalled(t, ctx, w, m)
	sys := run(t, ctx, c, "readlink /run/current-system")
	if !strings.Contains(sys, "nixos-system-"+scenario+"-") {
		t.Errorf("/run/current-system = %s, want the %s system", sys, scenario)
	}
	if !strings.Contains(output, "the installed system is up: /run/current-system = "+sys) {
		t.Errorf("nixos-via did not report the verified system:\n%s", output)
	}
	if got := run(t, ctx, c, "hostname"); got != scenario {
		t.Errorf("hostname = %q, want %q", got, scenario)
	}
	if out, err := c.Output(ctx, "nix-store --verify --check-contents 2>&1", nil); err != nil || strings.Contains(string(out), "error") {
		t.Errorf("nix-store --verify --check-contents: %v\n%s", err, out)
	}
	if out, err := c.Output(ctx, "nix-store --check-validity $(nix-store -qR /run/current-system) && nix-store -qR /run/current-system | wc -l", nil); err != nil {
		t.Errorf("closure not valid in the installed database: %v\n%s", err, out)
	} else {
		t.Logf("installed closure: %s valid paths", strings.TrimSpace(string(out)))
	}
	kh, _ := os.ReadFile(m.knownHosts)
	if bytes.Equal(kh, []byte(m.hostLine)) {
		t.Errorf("known_hosts still holds only the provider's key; the new system's key was not recorded")
	}
}

// TestInstallScenarios runs the whole install (kexec, disko, install,
// reboot) of the test systems that need nothing but their disks, RAM and,
// for LUKS, the passphrase typed at the installed initrd's prompt, then
// checks the booted system (checkInstalled) and what the scenario adds:
//   - EFIExt4: GPT, ESP + ext4 on one disk; then deploys to it (checkDeploys)
//   - RAID1: two disks, an mdadm RAID1 root whose level is checked
//   - LVMOnLUKS: LUKS -> LVM root + swap LVs, / on vtpool-root
//   - SmallRAM: the efi-ext4 install on a 384 MiB host
func TestInstallScenarios(t *testing.T) {
	w := setup(t)
	tests := []struct {
		name     string // the subtest: what TestInstall<name> was
		scenario string // the vmtests/flake system, also the VM's name
		disks    int
		memMiB   int
		luks     bool // disko gets a key file and the installed initrd asks for its passphrase
		check    func(t *testing.T, ctx context.Context, c *target.Conn)
		deploy   bool // then deploy to the installed system (checkDeploys)
	}{
		{name: "EFIExt4", scenario: "efi-ext4", disks: 1, memMiB: 512, deploy: true},
		{name: "RAID1", scenario: "raid1", disks: 2, memMiB: 512, check: func(t *testing.T, ctx context.Context, c *target.Conn) {
			if got := run(t, ctx, c, "cat /sys/block/md*/md/level | head -n1"); got != "raid1" {
				t.Errorf("md level = %q, want raid1", got)
			}
		}},
		{name: "LVMOnLUKS", scenario: "lvm-on-luks", disks: 1, memMiB: 512, luks: true, check: func(t *testing.T, ctx context.Context, c *target.Conn) {
			checkRootOn(t, ctx, c, "vtpool-root")
		}},
		{name: "SmallRAM", scenario: "small-ram", disks: 1, memMiB: 384},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
			defer cancel()
			m := w.bootWith(t, tc.scenario, tc.disks, tc.memMiB, tc.luks)
			var extra []string
			var typed <-chan error
			if tc.luks {
				keyFile, pass := secretKey(t)
				typed = typePassphraseAtPrompt(t, ctx, m, pass)
				extra = []string{"--disk-encryption-keys", "/tmp/secret.key", keyFile}
			}
			out := mustSucceed(t, ctx, m, "", nil, w.installArgs(m, tc.scenario, extra...)...)
			if typed != nil {
				if err := <-typed; err != nil {
					t.Fatalf("answering the LUKS prompt: %v", err)
				}
			}
			checkInstalled(t, ctx, w, m, tc.scenario, out)
			if tc.check != nil {
				tc.check(t, ctx, dialInstalled(t, ctx, w, m))
			}
			if tc.deploy {
				checkDeploys(t, ctx, w, m)
			}
		})
	}
}

// typePassphraseAtPrompt answers the installed initrd's LUKS prompt on the
// serial console, in the background.
func typePassphraseAtPrompt(t *testing.T, ctx context.Context, m *machine, passphrase string) <-chan error {
	done := make(chan error, 1)
	go func() {
		if err := m.v.ExpectString(ctx, "Enter passphrase for crypted"); err != nil {
			done <- err
			return
		}
		done <- m.v.Type(ctx, passphrase+"\r")
	}()
	return done
}

// secretKey writes a random key file with no trailing newline (it is also
// the passphrase typed at boot).
func secretKey(t *testing.T) (string, string) {
	b := make([]byte, 16)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	f.Read(b)
	f.Close()
	pass := fmt.Sprintf("%x", b)
	p := filepath.Join(t.TempDir(), "secret.key")
	if err := os.WriteFile(p, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, pass
}

// checkRootOn asserts that / is mounted from the device-mapper device dm
// (the test system has no udev, so /dev/mapper entries are plain nodes).
func checkRootOn(t *testing.T, ctx context.Context, c *target.Conn, dm string) {
	t.Helper()
	if got := run(t, ctx, c, "awk '$2==\"/\"{print $1}' /proc/mounts | tail -n1"); got != "/dev/mapper/"+dm {
		t.Errorf("/ is mounted from %q, want /dev/mapper/%s", got, dm)
	}
	if got := run(t, ctx, c, "cat /sys/block/dm-*/dm/name"); !strings.Contains(got, dm) {
		t.Errorf("device-mapper devices %q, want %s among them", got, dm)
	}
}
