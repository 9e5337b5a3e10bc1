package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/images"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
)

// mountEntry is one line of /proc/self/mountinfo, as far as it names a
// mount: where, what and which file system.
type mountEntry struct{ point, fstype, source string }

func parseMountinfo(s string) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(s, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		out = append(out, mountEntry{point: f[4], fstype: g[0], source: g[1]})
	}
	return out
}

// apiMounts are the entries at or under /dev, /proc and /sys.
func apiMounts(ms []mountEntry) []mountEntry {
	var out []mountEntry
	for _, m := range ms {
		for _, d := range []string{"/dev", "/proc", "/sys"} {
			if m.point == d || strings.HasPrefix(m.point, d+"/") {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// TestInstallKeepsTheInstallersMountsWhenShared boots an installer whose
// mounts are shared (as under systemd, the real NixOS installer's init)
// as a rescue system and installs without a reboot: every mount it had
// under /dev, /proc and /sys before the install is still there after it
// (the bootloader chroot's teardown must not propagate to them).
func TestInstallKeepsTheInstallersMountsWhenShared(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	inst := testimg.RescueInstaller(t, w.keys, w.agent, testimg.RescueOptions{SharedMounts: true})
	dir := t.TempDir()
	tb := filepath.Join(dir, "unpacked")
	os.MkdirAll(tb, 0o755)
	if out, err := runCmd("tar", "-C", tb, "-xzf", inst.Path); err != nil {
		t.Fatalf("unpack: %v\n%s", err, out)
	}
	disk := filepath.Join(dir, "rescue-disk.qcow2")
	if err := images.BuildBootDisk(ctx, disk, filepath.Join(tb, "kexec", "bzImage"), filepath.Join(tb, "kexec", "initrd"), inst.Cmdline); err != nil {
		t.Fatal(err)
	}
	rw := *w
	rw.provDisk = disk
	m := rw.boot(t, "shared-mounts", 1, 512)

	readMounts := func(c *target.Conn) []mountEntry { return parseMountinfo(run(t, ctx, c, "cat /proc/self/mountinfo")) }
	res, err := target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", m.port),
		IdentityFiles: []string{w.keys.ClientKeyFile}, KnownHostsFiles: []string{m.knownHosts},
		StrictHostKeyChecking: target.StrictYes, SSHConfigFile: "none", ConnectTimeout: 20 * time.Second}.Resolve(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := target.WaitUp(ctx, res, t.TempDir(), 3*time.Minute, 2*time.Second)
	if err != nil {
		t.Fatalf("wait for the rescue system: %v\n--- console ---\n%s", err, m.v.ConsoleTail(40))
	}
	// Shared, as the option says: the root's optional fields name a peer group.
	if info := run(t, ctx, c, "cat /proc/self/mountinfo"); !strings.Contains(info, "shared:") {
		t.Fatalf("the installer's mounts are not shared:\n%s", info)
	}
	before := apiMounts(readMounts(c))
	if len(before) < 4 {
		t.Fatalf("the installer has only %v under /dev, /proc, /sys", before)
	}
	c.Close()

	out := mustSucceed(t, ctx, m, "", nil, w.installArgs(m, "rescue", "--phases", "disko,install")...)
	if !strings.Contains(out, "switch-to-configuration") {
		t.Errorf("the install did not install the bootloader:\n%s", out)
	}
	c = dialInstalled(t, ctx, w, m)
	after := readMounts(c)
	have := map[mountEntry]bool{}
	for _, e := range after {
		have[e] = true
	}
	for _, e := range before {
		if !have[e] {
			t.Errorf("after the install the installer lost the mount %s (%s from %s)", e.point, e.fstype, e.source)
		}
	}
	if t.Failed() {
		t.Logf("before: %v\nafter: %v", before, apiMounts(after))
	}
	// The session still works for what comes after the install.
	if got := run(t, ctx, c, "ls /dev/pts >/dev/null && echo ok"); got != "ok" {
		t.Errorf("/dev/pts after the install: %q", got)
	}
}
