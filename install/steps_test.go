package install

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// dialLoopback starts an sshd on 127.0.0.1 and connects to it as root.
func dialLoopback(t *testing.T) *target.Conn {
	t.Helper()
	s := sshtest.Start(t, sshtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := target.Dial(ctx, target.Options{
		Destination:    "root@" + s.Addr,
		IdentityFiles:  []string{s.ClientKey},
		PinnedKey:      s.HostKey,
		SSHConfigFile:  "none",
		ConnectTimeout: 5 * time.Second,
	}, t.TempDir())
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// msgs are the messages of the events of kind k.

func owner(t *testing.T, p string) string {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d", sys.Uid, sys.Gid)
}

func TestUploadAgent(t *testing.T) {
	c := dialLoopback(t)
	local := filepath.Join(t.TempDir(), "agent")
	data := bytes.Repeat([]byte("agent bytes\n"), 10000)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	remote := filepath.Join(t.TempDir(), "run", "nixos-via", "nixos-via")
	rec := &testutil.Recorder{}
	if err := UploadAgent(testCtx(t), c, rec, local, remote); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(remote)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("remote agent: %d bytes (%v), want the %d local bytes", len(got), err, len(data))
	}
	if st, err := os.Stat(remote); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("remote agent mode: %v (%v), want 0755", st.Mode().Perm(), err)
	}
	if got, want := rec.Messages(event.Step), []string{"uploading the agent"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("steps %q, want %q", got, want)
	}
	// The same agent again (the disko phase uploaded it for a prebuilt
	// script) is kept; another one replaces it.
	again := &testutil.Recorder{}
	if err := UploadAgent(testCtx(t), c, again, local, remote); err != nil {
		t.Fatal(err)
	}
	if got := again.Messages(event.Step); len(got) != 0 {
		t.Errorf("the same agent again: steps %q, want none (kept)", got)
	}
	data = append(data, "a newer build\n"...)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UploadAgent(testCtx(t), c, again, local, remote); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(remote); err != nil || !bytes.Equal(got, data) {
		t.Errorf("another agent: remote has %d bytes (%v), want the %d new ones", len(got), err, len(data))
	}
}

func TestExtraFiles(t *testing.T) {
	c := dialLoopback(t)
	src := t.TempDir()
	files := map[string]fs.FileMode{"home/alice/notes.txt": 0o640, "home/alice/bin/hello": 0o755, "root/extra.conf": 0o600}
	for p, mode := range files {
		full := filepath.Join(src, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte("content of "+p+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
	os.Mkdir(filepath.Join(src, "root", "private"), 0o700)
	os.Symlink("notes.txt", filepath.Join(src, "home/alice/link"))
	// Owned by someone else here, they must still land as root's.
	filepath.WalkDir(src, func(p string, _ fs.DirEntry, _ error) error { return os.Lchown(p, 1000, 100) })

	root := t.TempDir()
	os.Chmod(root, 0o700)
	os.WriteFile(filepath.Join(root, "kept"), []byte("was there"), 0o644)
	rec := &testutil.Recorder{}
	if err := ExtraFiles(testCtx(t), c, rec, src, root); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{ // path -> "mode owner"
		".":                    "755 0:0",
		"home":                 "755 0:0",
		"home/alice":           "755 0:0",
		"home/alice/notes.txt": "640 0:0",
		"home/alice/bin":       "755 0:0",
		"home/alice/bin/hello": "755 0:0",
		"root/extra.conf":      "600 0:0",
		"root/private":         "700 0:0",
		"home/alice/link":      "777 0:0",
	}
	for p, w := range want {
		full := filepath.Join(root, p)
		st, err := os.Lstat(full)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if got := fmt.Sprintf("%o %s", st.Mode().Perm(), owner(t, full)); got != w {
			t.Errorf("%s: got %s, want %s", p, got, w)
		}
	}
	if got, err := os.Readlink(filepath.Join(root, "home/alice/link")); got != "notes.txt" {
		t.Errorf("home/alice/link -> %q (%v), want notes.txt", got, err)
	}
	for p := range files {
		if got, _ := os.ReadFile(filepath.Join(root, p)); string(got) != "content of "+p+"\n" {
			t.Errorf("%s holds %q", p, got)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(root, "kept")); string(got) != "was there" {
		t.Errorf("a file already in the root holds %q, want it untouched", got)
	}
	if got, want := rec.Messages(event.Step), "copying extra files from "+src; len(got) != 1 || got[0] != want {
		t.Errorf("steps %q, want %q", got, want)
	}
}

func TestExtraFilesRefusesNonDirectory(t *testing.T) {
	c := dialLoopback(t)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	for _, src := range []string{file, filepath.Join(t.TempDir(), "missing")} {
		err := ExtraFiles(testCtx(t), c, nil, src, t.TempDir())
		if want := "--extra-files " + src + ": not a directory"; err == nil || err.Error() != want {
			t.Errorf("ExtraFiles(%s) = %v, want %s", src, err, want)
		}
	}
}

func TestChown(t *testing.T) {
	c := dialLoopback(t)
	root := t.TempDir()
	for _, p := range []string{"home/alice/bin/hello", "home/alice/notes.txt", "home/bob/notes.txt"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), nil, 0o644)
	}
	rec := &testutil.Recorder{}
	if err := Chown(testCtx(t), c, rec, root, "/home/alice", "1000:100"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"home":                 "0:0",
		"home/alice":           "1000:100",
		"home/alice/bin":       "1000:100",
		"home/alice/bin/hello": "1000:100",
		"home/alice/notes.txt": "1000:100",
		"home/bob/notes.txt":   "0:0",
	} {
		if got := owner(t, filepath.Join(root, p)); got != want {
			t.Errorf("%s owned by %s, want %s", p, got, want)
		}
	}
	if got, want := rec.Messages(event.Info), "chown -R 1000:100 "+root+"/home/alice"; len(got) != 1 || got[0] != want {
		t.Errorf("info %q, want %q", got, want)
	}

	err := Chown(testCtx(t), c, nil, root, "/home/alice", "no-such-user-here")
	if want := "--chown /home/alice no-such-user-here: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Chown to an unknown user = %v, want an error starting %q", err, want)
	}
}

func TestCopyHostKeysKeepsExisting(t *testing.T) {
	c := dialLoopback(t)
	keys, _ := filepath.Glob("/etc/ssh/ssh_host_*")
	if len(keys) < 2 {
		t.Skipf("this machine has %d host key files in /etc/ssh, want at least 2", len(keys))
	}
	root := t.TempDir()
	ours := filepath.Join(root, keys[0])
	os.MkdirAll(filepath.Dir(ours), 0o700)
	os.WriteFile(ours, []byte("the installed system's own key"), 0o600)

	rec := &testutil.Recorder{}
	if err := CopyHostKeys(testCtx(t), c, rec, root); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(ours); string(got) != "the installed system's own key" {
		t.Errorf("%s was overwritten", ours)
	}
	wantInfo := []string{"kept " + ours}
	for _, k := range keys[1:] {
		wantInfo = append(wantInfo, "copied "+k)
		src, _ := os.Lstat(k)
		dst, err := os.Lstat(filepath.Join(root, k))
		if err != nil {
			t.Errorf("%s not copied: %v", k, err)
			continue
		}
		a, _ := os.ReadFile(k)
		b, _ := os.ReadFile(filepath.Join(root, k))
		// Compared, never printed: these are private keys.
		if !bytes.Equal(a, b) || src.Mode() != dst.Mode() || owner(t, k) != owner(t, filepath.Join(root, k)) {
			t.Errorf("%s copied as mode %v owner %s, want an identical copy (mode %v owner %s)", k, dst.Mode(), owner(t, filepath.Join(root, k)), src.Mode(), owner(t, k))
		}
	}
	// In the order of the host's shell glob, which may collate differently.
	got := rec.Messages(event.Info)
	sort.Strings(got)
	sort.Strings(wantInfo)
	if strings.Join(got, "|") != strings.Join(wantInfo, "|") {
		t.Errorf("info %q, want %q", got, wantInfo)
	}

	// Again: everything is there now and nothing is copied.
	rec = &testutil.Recorder{}
	if err := CopyHostKeys(testCtx(t), c, rec, root); err != nil {
		t.Fatal(err)
	}
	for _, m := range rec.Messages(event.Info) {
		if !strings.HasPrefix(m, "kept ") {
			t.Errorf("second run: %q, want only kept keys", m)
		}
	}
}

func TestRemoveKeyFiles(t *testing.T) {
	c := dialLoopback(t)
	dir := t.TempDir()
	keys := []string{filepath.Join(dir, "secret.key"), filepath.Join(dir, "with space.key")}
	other := filepath.Join(dir, "other")
	for _, p := range append(keys, other) {
		os.WriteFile(p, []byte("secret"), 0o600)
	}
	for _, tc := range []struct {
		name     string
		paths    []string
		wantInfo int
	}{
		{"none", nil, 0},
		{"two", keys, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &testutil.Recorder{}
			if err := RemoveKeyFiles(testCtx(t), c, rec, tc.paths); err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.paths {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s still exists", p)
				}
			}
			if got := rec.Messages(event.Info); len(got) != tc.wantInfo || (tc.wantInfo == 1 && got[0] != "removed the key files from the installer") {
				t.Errorf("info %q, want %d report(s)", got, tc.wantInfo)
			}
		})
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file not named was removed: %v", err)
	}
}

// Fake store paths of the fake installed system (fakeRoot): the toplevel,
// its sw (the system path) and the package systemd-tmpfiles links into.
const (
	fakeToplevel = "/nix/store/0a3vxsn4hb3mz4b9f0bkiwxcjyw5q4hd-nixos-system-test"
	fakeSw       = "/nix/store/1b4wytp5ic4na5c0g1clkxydkzx6r5ie-system-path"
	fakeSystemd  = "/nix/store/2c5xzvq6jd5pb6d1h2dmlyzfl0y7s6jf-systemd"
)

// fakeSystem says what fakeRoot's system has.
type fakeSystem struct {
	activate bool // an activate script
	tmpfiles bool // sw/bin/systemd-tmpfiles
	stcExit  int  // switch-to-configuration's exit status
}

// fakeRoot makes an installed root in a new directory: the installer's own
// /bin/sh with its libraries, so that scripts run in a chroot of it, and a
// system profile whose generation is a toplevel of shell scripts that
// append what they were called with (and what they saw) to /calls. Every
// store symlink is absolute, as in a real store, and none of these paths
// exists outside the root.
func fakeRoot(t *testing.T, s fakeSystem) string {
	t.Helper()
	r := t.TempDir()
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{sh}
	out, err := exec.Command("ldd", sh).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", sh, err)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	for i, f := range files {
		dst := filepath.Join(r, f)
		if i == 0 {
			dst = filepath.Join(r, "bin/sh")
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		write(t, dst, string(b), 0o755)
	}
	write(t, r+fakeToplevel+"/bin/switch-to-configuration", fmt.Sprintf(`#!/bin/sh
d=no; [ -c /dev/null ] && d=yes
p=no; [ -r /proc/self/mountinfo ] && p=yes
s=no; [ -d /sys/kernel ] && s=yes
n=no; [ -f /etc/NIXOS ] && n=yes
m=no; [ -f /mnt/etc/NIXOS ] && m=yes
echo "switch-to-configuration $* NIXOS_INSTALL_BOOTLOADER=$NIXOS_INSTALL_BOOTLOADER dev=$d proc=$p sys=$s /etc/NIXOS=$n /mnt=$m" >> /calls
exit %d
`, s.stcExit), 0o755)
	if s.activate {
		write(t, r+fakeToplevel+"/activate", "#!/bin/sh\necho \"activate IN_NIXOS_ENTER=$IN_NIXOS_ENTER\" >> /calls\n", 0o755)
	}
	symlink(t, fakeSw, r+fakeToplevel+"/sw")
	os.MkdirAll(r+fakeSw+"/bin", 0o755)
	if s.tmpfiles {
		write(t, r+fakeSystemd+"/bin/systemd-tmpfiles", "#!/bin/sh\necho \"systemd-tmpfiles $*\" >> /calls\nexit 1\n", 0o755)
		symlink(t, fakeSystemd+"/bin/systemd-tmpfiles", r+fakeSw+"/bin/systemd-tmpfiles")
	}
	symlink(t, fakeToplevel, r+"/nix/var/nix/profiles/system-1-link")
	symlink(t, "system-1-link", r+"/nix/var/nix/profiles/system")
	return r
}

func write(t *testing.T, p, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// mountPoints are the mount points (with their file system types) that
// mountinfo lists at or under one of dirs, sorted.
func mountPoints(t *testing.T, mountinfo string, dirs ...string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(mountinfo), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			t.Fatalf("mountinfo line %q", line)
		}
		for _, d := range dirs {
			if f[4] == d || strings.HasPrefix(f[4], d+"/") {
				out = append(out, f[4]+" "+f[sep+1])
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// inSharedNamespace runs script with sh as root in a mount namespace of its
// own whose every mount is shared (as systemd leaves them), with root
// bind-mounted at /mnt as a mount of its own (as the installed system's
// file system is), and dirs put first on the script's PATH. It returns the
// script's exit status and output and the namespace's mountinfo before and
// after it.
func inSharedNamespace(t *testing.T, root, script string, path ...string) (rc int, out, before, after string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespaces, mounts, chroot)")
	}
	if err := exec.Command("unshare", "-m", "true").Run(); err != nil {
		t.Skipf("unshare -m: %v", err)
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "script"), script, 0o644)
	driver := `set -e
mount --make-rshared /
mount --bind "$1" /mnt
mount --make-private /mnt
mount --make-shared /mnt
cat /proc/self/mountinfo > "$2/before"
rc=0
PATH="$3" sh "$2/script" > "$2/out" 2>&1 || rc=$?
echo $rc > "$2/rc"
cat /proc/self/mountinfo > "$2/after"
`
	p := strings.Join(append(path, os.Getenv("PATH")), ":")
	if b, err := exec.Command("unshare", "-m", "sh", "-c", driver, "sh", root, dir, p).CombinedOutput(); err != nil {
		t.Fatalf("the namespace's driver: %v\n%s", err, b)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if _, err := fmt.Sscan(read("rc"), &rc); err != nil {
		t.Fatal(err)
	}
	return rc, read("out"), read("before"), read("after")
}

// TestBootloaderScript runs InstallBootloader's script for real, as root in
// a mount namespace whose mounts are all shared, on a fake installed root
// at /mnt: the installer's mounts under /dev, /proc and /sys are all still
// there afterwards and nothing is left mounted in the root, the root is
// marked as NixOS (etc/NIXOS) with etc/mtab -> /proc/mounts, and the
// chroot runs activate, then systemd-tmpfiles when the system has it, then
// switch-to-configuration boot with /dev, /proc, /sys and the root itself
// at /mnt inside. Both with a private namespace of the script's own and,
// where unshare fails, without.
func TestBootloaderScript(t *testing.T) {
	noUnshare := t.TempDir()
	write(t, filepath.Join(noUnshare, "unshare"), "#!/bin/sh\necho 'unshare: Operation not permitted' >&2\nexit 1\n", 0o755)
	// Busybox's unshare, as on installers built from busybox (vmtests').
	bbUnshare := t.TempDir()
	bb, bbErr := exec.LookPath("busybox")
	if bbErr == nil {
		symlink(t, bb, filepath.Join(bbUnshare, "unshare"))
	}
	const (
		activate = "activate IN_NIXOS_ENTER=1"
		tmpfiles = "systemd-tmpfiles --create --remove -E"
		stc      = "switch-to-configuration boot NIXOS_INSTALL_BOOTLOADER=1 dev=yes proc=yes sys=yes /etc/NIXOS=yes"
	)
	for _, tc := range []struct {
		name      string
		path      []string
		system    fakeSystem
		wantRC    int
		wantCalls []string
		wantOut   string // a line the output has
	}{
		{"namespace", nil, fakeSystem{activate: true, tmpfiles: true}, 0,
			[]string{activate, tmpfiles, stc + " /mnt=yes"}, "systemd-tmpfiles exited 1 (ignored, as nixos-enter does)"},
		{"namespace by busybox unshare", []string{bbUnshare}, fakeSystem{activate: true, tmpfiles: true}, 0,
			[]string{activate, tmpfiles, stc + " /mnt=yes"}, ""},
		{"namespace without systemd-tmpfiles", nil, fakeSystem{activate: true}, 0,
			[]string{activate, stc + " /mnt=yes"}, ""},
		{"no namespace", []string{noUnshare}, fakeSystem{activate: true, tmpfiles: true}, 0,
			[]string{activate, tmpfiles, stc + " /mnt=no"}, "no private mount namespace (unshare failed): the chroot's mounts are slaves of the installer's"},
		{"no namespace without systemd-tmpfiles", []string{noUnshare}, fakeSystem{activate: true}, 0,
			[]string{activate, stc + " /mnt=no"}, ""},
		{"namespace, switch-to-configuration fails", nil, fakeSystem{stcExit: 3}, 3,
			[]string{stc + " /mnt=yes"}, ""},
		{"no namespace, switch-to-configuration fails", []string{noUnshare}, fakeSystem{stcExit: 3}, 3,
			[]string{stc + " /mnt=no"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if slices.Contains(tc.path, bbUnshare) && bbErr != nil {
				t.Skipf("no busybox: %v", bbErr)
			}
			root := fakeRoot(t, tc.system)
			rc, out, before, after := inSharedNamespace(t, root, bootloaderScript(DefaultRoot), tc.path...)
			if rc != tc.wantRC {
				t.Errorf("exit status %d, want %d; output:\n%s", rc, tc.wantRC, out)
			}
			if got, want := mountPoints(t, after, "/dev", "/proc", "/sys"), mountPoints(t, before, "/dev", "/proc", "/sys"); !slices.Equal(got, want) {
				t.Errorf("the installer's mounts under /dev, /proc, /sys after the script:\n%s\nwant those before it:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if got, want := mountPoints(t, after, DefaultRoot), mountPoints(t, before, DefaultRoot); !slices.Equal(got, want) {
				t.Errorf("mounted at or under %s after the script: %q, want what was before it: %q", DefaultRoot, got, want)
			}
			b, _ := os.ReadFile(filepath.Join(root, "calls"))
			if got, want := strings.Split(strings.TrimSpace(string(b)), "\n"), tc.wantCalls; !slices.Equal(got, want) {
				t.Errorf("calls in the chroot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if st, err := os.Lstat(filepath.Join(root, "etc/NIXOS")); err != nil || !st.Mode().IsRegular() {
				t.Errorf("etc/NIXOS: %v (%v), want a file", st, err)
			}
			if got, err := os.Readlink(filepath.Join(root, "etc/mtab")); err != nil || got != "/proc/mounts" {
				t.Errorf("etc/mtab -> %q (%v), want a symlink to /proc/mounts", got, err)
			}
			if _, err := os.Lstat(filepath.Join(root, "mnt")); err == nil {
				t.Errorf("%s/mnt is left in the root", root)
			}
			if strings.Contains(out, "could not unmount") {
				t.Errorf("output:\n%s\nwant every mount of the script's undone", out)
			}
			wantFallback := slices.Contains(tc.path, noUnshare)
			if fallback := strings.Contains(out, "no private mount namespace"); fallback != wantFallback {
				t.Errorf("output:\n%s\nsays it fell back to slave mounts: %v, want %v", out, fallback, wantFallback)
			}
			if tc.wantOut != "" && !slices.Contains(strings.Split(out, "\n"), tc.wantOut) {
				t.Errorf("output:\n%s\nwant a line %q", out, tc.wantOut)
			}
		})
	}
}
