package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/cmd/nixos-via/cli"
	"github.com/nixos-via/nixos-via/images"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// nixosViaEnv runs the CLI in-process with the given environment variables
// (nil: none) on top of HOME and XDG_CACHE_HOME; nothing else of the
// developer's environment (SSH agent, SSHPASS) leaks in.
func nixosViaEnv(t *testing.T, ctx context.Context, vars map[string]string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	env := cli.Env{Args: args, Stdout: &out, Stderr: &out, Getenv: func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		if k == "HOME" || k == "XDG_CACHE_HOME" {
			return os.Getenv(k)
		}
		return ""
	}}
	start := time.Now()
	code := cli.Run(ctx, env)
	t.Logf("nixos-via %s: exit %d after %s", strings.Join(args, " "), code, time.Since(start).Round(time.Second))
	return code, out.String()
}

// waitProvider waits until the provider answers SSH.
func waitProvider(t *testing.T, ctx context.Context, w *world, m *machine) *target.Conn {
	t.Helper()
	res, err := target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", m.port),
		IdentityFiles: []string{w.keys.ClientKeyFile}, KnownHostsFiles: []string{m.knownHosts},
		StrictHostKeyChecking: target.StrictYes, SSHConfigFile: "none", ConnectTimeout: 10 * time.Second}.Resolve(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := target.WaitUp(ctx, res, t.TempDir(), 3*time.Minute, 2*time.Second)
	if err != nil {
		t.Fatalf("provider did not come up: %v\n%s", err, m.v.ConsoleTail(40))
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// diskHashes hashes every disk image of the VM on the host (target disks
// are raw files and QEMU writes guest data straight through to them; the
// provider disk is a qcow2 overlay that changes with any write).
func diskHashes(t *testing.T, m *machine) string {
	t.Helper()
	var b strings.Builder
	for _, p := range m.v.DiskPaths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		fmt.Fprintf(&b, "%s %x\n", filepath.Base(p), h.Sum(nil))
	}
	return b.String()
}

// TestRefusalsTouchNothing: a layout naming a disk the host lacks, a host
// with less RAM than the installer needs, and a changed host key each stop
// the run before anything is touched: the disks hash the same afterwards
// and the host still runs its own system.
func TestRefusalsTouchNothing(t *testing.T) {
	w := setup(t)
	tests := []struct {
		name     string
		scenario string
		targets  int
		memMiB   int
		badKey   bool
		wantCode int
		wantMsg  string
	}{
		// raid1 names /dev/vda and /dev/vdb; with no target disk the
		// provider's own disk is vda and vdb is missing.
		{"missing disk", "raid1", 0, 512, false, cli.ExitRefused, "/dev/vdb, which the host does not have"},
		{"too little RAM", "efi-ext4", 1, 192, false, cli.ExitRefused, "pre-flight memory: the host has"},
		{"changed host key", "efi-ext4", 1, 512, true, cli.ExitHostKey, "host key for [127.0.0.1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
			defer cancel()
			m := w.boot(t, "refusal", tc.targets, tc.memMiB)
			c := waitProvider(t, ctx, w, m)
			before := diskHashes(t, m)
			bootID := run(t, ctx, c, "cat /proc/sys/kernel/random/boot_id")
			args := w.installArgs(m, tc.scenario)
			if tc.badKey {
				// A known_hosts that has another key for the host.
				kh := filepath.Join(t.TempDir(), "kh")
				os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBn2lI6F8CdTqYHrPu1Vz5Eb5W6B4sXOZ8o8r9kWk6bX\n", m.v.SSHPort)), 0o600)
				for i, a := range args {
					if strings.HasPrefix(a, "UserKnownHostsFile=") {
						args[i] = "UserKnownHostsFile=" + kh
					}
				}
			}
			code, out := nixosVia(t, ctx, args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantMsg) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, tc.wantCode, tc.wantMsg, out)
			}
			if after := diskHashes(t, m); after != before {
				t.Errorf("disks changed:\nbefore %s\nafter  %s", before, after)
			}
			if got := run(t, ctx, c, "cat /proc/sys/kernel/random/boot_id"); got != bootID {
				t.Errorf("the host rebooted (boot id %s -> %s)", bootID, got)
			}
			if got := run(t, ctx, c, "ls -d /root/.nixos-via-kexec.* 2>/dev/null | wc -l"); got != "0" {
				t.Errorf("work directories left on the host: %s", got)
			}
		})
	}
}

// TestInstallExtras: --extra-files with modes, --chown, and --copy-host-keys
// (the installed system presents the provider's original host key).
func TestInstallExtras(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	m := w.boot(t, "extras", 1, 512)
	extra := t.TempDir()
	for p, mode := range map[string]os.FileMode{"home/alice/notes.txt": 0o640, "home/alice/bin/hello": 0o755, "root/extra.conf": 0o600} {
		full := filepath.Join(extra, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte("content of "+p+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
	os.Symlink("notes.txt", filepath.Join(extra, "home/alice/link"))
	mustSucceed(t, ctx, m, "", nil, w.installArgs(m, "extras", "--extra-files", extra, "--chown", "/home/alice", "1000:100", "--copy-host-keys")...)
	// --copy-host-keys: known_hosts still holds the provider's key first and
	// otherwise only the provider's keys of other types (the host key set
	// learnt on first contact), and the installed system must match them.
	kh, _ := os.ReadFile(m.knownHosts)
	if !strings.HasPrefix(string(kh), m.hostLine) {
		t.Errorf("known_hosts lost the provider's key with --copy-host-keys:\n%s", kh)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(kh)), "\n") {
		if f := strings.Fields(l); len(f) < 3 || !slices.Contains(w.hostKeys, f[1]+" "+f[2]) {
			t.Errorf("known_hosts line %q is not one of the provider's keys %q", l, w.hostKeys)
		}
	}
	c := dialInstalled(t, ctx, w, m)
	if got := run(t, ctx, c, "readlink /run/current-system"); !strings.Contains(got, "nixos-system-extras-") {
		t.Errorf("/run/current-system = %s", got)
	}
	checks := map[string]string{
		"stat -c '%a %u:%g' /home/alice/notes.txt": "640 1000:100",
		"stat -c '%a %u:%g' /home/alice/bin/hello": "755 1000:100",
		"stat -c '%u:%g' /home/alice":              "1000:100",
		"stat -c '%a %u:%g' /root/extra.conf":      "600 0:0",
		"readlink /home/alice/link":                "notes.txt",
		"cat /home/alice/notes.txt":                "content of home/alice/notes.txt",
		"stat -c '%a' /":                           "755",
	}
	for cmd, want := range checks {
		if got := run(t, ctx, c, cmd); got != want {
			t.Errorf("%s = %q, want %q", cmd, got, want)
		}
	}
}

// TestInstallFromRescueSystem boots our installer image directly, as a
// provider's rescue system would be, and installs without kexec.
func TestInstallFromRescueSystem(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	rescue := filepath.Join(dir, "rescue.tar.gz")
	inst, err := images.BuildInstaller(ctx, rescue, images.InstallerOptions{Agent: w.agent,
		HostKeys: []images.HostKey{w.keys.HostKey}, AuthorizedKeys: []string{w.keys.ClientPub}})
	if err != nil {
		t.Fatal(err)
	}
	tb := filepath.Join(dir, "unpacked")
	os.MkdirAll(tb, 0o755)
	if out, err := runCmd("tar", "-C", tb, "-xzf", rescue); err != nil {
		t.Fatalf("unpack: %v\n%s", err, out)
	}
	disk := filepath.Join(dir, "rescue-disk.qcow2")
	if err := images.BuildBootDisk(ctx, disk, filepath.Join(tb, "kexec", "bzImage"), filepath.Join(tb, "kexec", "initrd"), inst.Cmdline); err != nil {
		t.Fatal(err)
	}
	rw := *w
	rw.provDisk = disk
	m := rw.boot(t, "rescue", 1, 512)
	out := mustSucceed(t, ctx, m, "", nil, w.installArgs(m, "rescue", "--phases", "disko,install,reboot")...)
	if strings.Contains(out, "[kexec]") {
		t.Errorf("the kexec phase ran:\n%s", out)
	}
	checkInstalled(t, ctx, w, m, "rescue", out)
}

// TestInstallResumesAfterACut cuts every connection while the closure is
// streaming; running the install phase again sends only what is missing
// and the system boots with a store that verifies.
func TestInstallResumesAfterACut(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	m := w.boot(t, "resume", 1, 512)
	proxy := sshtest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", m.v.SSHPort))
	// known_hosts names the proxy's port.
	line := fmt.Sprintf("[127.0.0.1]:%d %s\n", proxy.Port, w.keys.HostKey.PublicLine)
	os.WriteFile(m.knownHosts, []byte(line), 0o600)
	m.hostLine, m.port = line, proxy.Port
	args := w.installArgs(m, "resume")

	var out bytes.Buffer
	cutWriter := &cutOnLine{w: &out, line: "copying the system closure", cut: func() {
		time.Sleep(1500 * time.Millisecond)
		proxy.Cut()
	}}
	env := cli.Env{Args: args, Stdout: cutWriter, Stderr: cutWriter, Getenv: func(k string) string {
		if k == "HOME" {
			return os.Getenv(k)
		}
		return ""
	}}
	code := cli.Run(ctx, env)
	if code != cli.ExitInstall {
		t.Fatalf("first run: exit %d, want %d (install failed by the cut)\n%s", code, cli.ExitInstall, out.String())
	}
	// It says where the host is and which command goes on.
	words := []string{"nixos-via"}
	for _, a := range args {
		words = append(words, target.ShellQuote(a))
	}
	for _, want := range []string{"The host now: the host runs the installer in RAM with the new system partly copied into /mnt",
		"To go on from here once the cause is fixed, run: " + strings.Join(words, " ") + "\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the failed run does not say %q:\n%s", want, out.String())
		}
	}
	// The same command again: the installer remembers it applied this
	// layout, so nothing is erased and only the missing paths are sent.
	out2 := mustSucceed(t, ctx, m, "resumed run", nil, args...)
	if !strings.Contains(out2, "already there") || !strings.Contains(out2, "nothing is erased again") || strings.Contains(out2, "ERASE") {
		t.Errorf("the resumed run erased the disk again or does not report what was already there:\n%s", out2)
	}
	checkInstalled(t, ctx, w, m, "resume", out2)
}

// cutOnLine calls cut (once, in the background) when a line appears.
type cutOnLine struct {
	w    *bytes.Buffer
	line string
	cut  func()
	done bool
}

func (c *cutOnLine) Write(p []byte) (int, error) {
	if !c.done && bytes.Contains(p, []byte(c.line)) {
		c.done = true
		go c.cut()
	}
	return c.w.Write(p)
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestInstallAdminPort: a configuration as many real ones are — root may
// not log in, the admin user alice (wheel) may, sshd listens on port
// 40022. The install is confirmed through alice on that port, whose new
// host key is recorded there, and root is refused.
func TestInstallAdminPort(t *testing.T) {
	const port = 40022 // the configuration's services.openssh.ports
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Skipf("port %d is in use here, and the test system's sshd listens there: %v", port, err)
	}
	l.Close()
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	m := w.bootWithForwards(t, "admin-port", 1, 512, []int{port})
	out := mustSucceed(t, ctx, m, "", nil, w.installArgs(m, "admin-port")...)
	if !strings.Contains(out, "the installed system is up") || !strings.Contains(out, "logged in as alice") {
		t.Errorf("nixos-via did not confirm the system through alice:\n%s", out)
	}
	if strings.Contains(out, "not checked") {
		t.Errorf("a confirmed install warns that it was not checked:\n%s", out)
	}
	kh, _ := os.ReadFile(m.knownHosts)
	if !strings.Contains(string(kh), fmt.Sprintf("[127.0.0.1]:%d ", port)) {
		t.Errorf("known_hosts has no entry for port %d:\n%s", port, kh)
	}
	dial := func(user string) (*target.Conn, error) {
		return target.Dial(ctx, target.Options{Destination: fmt.Sprintf("%s@127.0.0.1:%d", user, port),
			IdentityFiles: []string{w.keys.ClientKeyFile}, KnownHostsFiles: []string{m.knownHosts},
			StrictHostKeyChecking: target.StrictYes, SSHConfigFile: "none", ConnectTimeout: 20 * time.Second}, t.TempDir())
	}
	c, err := dial("alice")
	if err != nil {
		t.Fatalf("log in as alice on port %d with the recorded key: %v", port, err)
	}
	defer c.Close()
	var sys bytes.Buffer
	if err := c.RunAsLogin(ctx, "readlink /run/current-system", nil, &sys, nil); err != nil || !strings.Contains(sys.String(), "nixos-system-admin-port-") {
		t.Errorf("/run/current-system = %q (%v), want the admin-port system", sys.String(), err)
	}
	var ae *target.AuthError
	if rc, err := dial("root"); !errors.As(err, &ae) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("root login on the installed system: %v, want it refused (PermitRootLogin no)", err)
	}
}
