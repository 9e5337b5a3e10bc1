// Package vmtest runs `nixos-via --vm-test` (package localvm) through the
// real command line in-process: the test installer tarball booted
// directly in a throwaway QEMU VM (always -accel tcg here: nested KVM
// hangs on these machines), the test system of vmtests/flake installed
// and booted from the VM's disk, and nothing left behind afterwards (no
// QEMU process, no temp dir), also when the run fails or is interrupted.
package vmtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/cmd/nixos-via/cli"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
	"github.com/nixos-via/nixos-via/vmtests/vm"
)

func TestVMTest(t *testing.T) {
	if err := vm.Available(); err != nil {
		t.Skipf("no VMs here: %v", err)
	}
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("no nix (run vmtests/setup.sh)")
	}
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE_4M.fd"); err != nil {
		t.Skipf("no OVMF: %v", err)
	}
	inst := testimg.Installer(t)
	agent := testimg.Agent(t)
	// The test systems authorize the snakeoil key: the check after the
	// reboot logs in with it.
	key := testimg.SnakeoilKey(t)
	flake := "path:" + testimg.FlakeDir(t)
	home := t.TempDir() // no known_hosts of its own: a run must not write one
	for _, tc := range []struct {
		name, scenario string
		extra          []string
		cancel         bool // interrupt once QEMU runs
		slow           bool // only with NIXOS_VIA_VMTEST_SLOW=1
		wantCode       int
		want           []string
	}{
		// -o options that name another port or known_hosts do not
		// apply to the VM.
		{name: "efi-ext4 installs and boots from its disk", scenario: "efi-ext4", wantCode: cli.ExitOK,
			extra: []string{"--ssh-option", "Port=2222", "--ssh-option", "UserKnownHostsFile=" + filepath.Join(home, ".ssh", "known_hosts")},
			want: []string{"booting the installer in a local VM (tcg, OVMF", "the installer rebooted: the VM boots from its disk now",
				"the installed system is up: /run/current-system = /nix/store/", "vm-test passed: installed into the VM, which rebooted from its own disk"}},
		// sshd on 40022, root may not log in, alice (wheel) may: the VM
		// forwards 40022 and the check logs in as alice.
		{name: "admin-port", scenario: "admin-port", slow: true, wantCode: cli.ExitOK,
			want: []string{"127.0.0.1:40022 to its 40022", "waiting for the installed system on 127.0.0.1:40022", "logged in as alice", "vm-test passed"}},
		// The layout reads a LUKS key file nothing brings into the
		// installer: the disko phase refuses before it erases anything.
		{name: "layout key file missing", scenario: "luks-keyfile", wantCode: cli.ExitRefused,
			want: []string{"/tmp/secret.key", "the VM's console (last lines)"}},
		// Blank disks have nothing to mount: the disko script itself fails
		// (after its 120 s wait for the partitions, hence gated).
		{name: "disko script fails", scenario: "efi-ext4", extra: []string{"--disko-mode", "mount"}, slow: true, wantCode: cli.ExitDisko,
			want: []string{"device not found: /dev/disk/by-partlabel/disk-main-root", "the VM's console (last lines)"}},
		{name: "interrupted", scenario: "efi-ext4", cancel: true, wantCode: cli.ExitInterrupted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.slow && os.Getenv("NIXOS_VIA_VMTEST_SLOW") == "" {
				t.Skip("slow (3-4 min): set NIXOS_VIA_VMTEST_SLOW=1")
			}
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp) // where the VM's dir goes
			ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
			defer cancel()
			args := append([]string{"--vm-test", "--vm-accel", "tcg", "--flake", flake + "#" + tc.scenario,
				"--kexec", inst.Path, "--agent", agent, "-i", key, "--option", "substituters", "",
				"--timeout-reboot", "5m", "--no-substitute-on-destination"}, tc.extra...)
			if tc.cancel {
				go func() {
					for ctx.Err() == nil && len(qemus(tmp)) == 0 {
						time.Sleep(200 * time.Millisecond)
					}
					cancel()
				}()
			}
			var out bytes.Buffer
			env := cli.Env{Args: args, Stdout: &out, Stderr: &out, Getenv: func(k string) string {
				switch k {
				case "HOME":
					return home
				case "XDG_CACHE_HOME":
					return filepath.Join(tmp, "cache")
				}
				return ""
			}}
			start := time.Now()
			code := cli.Run(ctx, env)
			t.Logf("nixos-via %s: exit %d after %s", strings.Join(args, " "), code, time.Since(start).Round(time.Second))
			t.Logf("output:\n%s", out.String())
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d", code, tc.wantCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if ps := qemus(tmp); len(ps) > 0 {
				t.Errorf("QEMU still runs after the run: %v", ps)
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, "nixos-via-vmtest-*")); len(left) > 0 {
				t.Errorf("the run left %v", left)
			}
			if _, err := os.Stat(filepath.Join(home, ".ssh", "known_hosts")); err == nil {
				t.Errorf("the run wrote %s/.ssh/known_hosts", home)
			}
		})
	}
}

// qemus are the QEMU processes whose command line names dir.
func qemus(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.HasPrefix(cmd, "qemu-system") && strings.Contains(cmd, dir) {
			out = append(out, filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	return out
}

// TestVMTestUsage: what --vm-test refuses is refused before anything is
// built or booted.
func TestVMTestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--vm-test", "--flake", ".#a", "root@example.org"}, "--vm-test installs into a local VM, not onto root@example.org"},
		{[]string{"--vm-test", "--vm-accel", "hvf", "--flake", ".#a"}, `--vm-accel "hvf": want kvm, tcg or auto`},
		{[]string{"--vm-accel", "tcg", "--flake", ".#a", "root@example.org"}, "--vm-accel needs --vm-test"},
		{[]string{"--vm-test", "--flake", ".#a", "--extra-files", "/x"}, "--vm-test cannot be combined"},
	} {
		var out bytes.Buffer
		env := cli.Env{Args: tc.args, Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		if code := cli.Run(t.Context(), env); code != cli.ExitUsage || !strings.Contains(out.String(), tc.want) {
			t.Errorf("nixos-via %s: exit %d, %q; want exit %d with %q", strings.Join(tc.args, " "), code, out.String(), cli.ExitUsage, tc.want)
		}
		if left, _ := os.ReadDir(tmp); len(left) > 0 {
			t.Errorf("nixos-via %s left %v in TMPDIR", strings.Join(tc.args, " "), left)
		}
	}
}
