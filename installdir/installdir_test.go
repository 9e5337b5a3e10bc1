package installdir

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/enter"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// testNix is the local Nix as the VM tests run it: no binary cache, no
// sandbox (the test system's builders read this host's files).
var testNix = nix.CLI{Args: []string{"--option", "substituters", "", "--option", "sandbox", "false"}}

const (
	testFlake = "../vmtests/flake"
	testAttr  = `nixosConfigurations."efi-ext4".config`
)

func needRootAndNix(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (the store's ownership, chroot, namespaces)")
	}
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix is not installed (Debian: apt-get install nix-bin)")
	}
}

// extraFiles is an --extra-files directory: a file for alice, owned here
// by someone else (it lands as root's, then --chown gives it to 1000:100).
func extraFiles(t *testing.T) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "home/alice/notes.txt")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte("alice's notes\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(p string, _ fs.DirEntry, _ error) error { return os.Lchown(p, 2000, 2000) })
	return dir
}

var chown = []install.Ownership{{Path: "/home/alice", Owner: "1000:100"}}

// TestInstallToDir installs the test system (vmtests/flake's efi-ext4)
// into a directory and compares it with what the remote install's steps
// make of the same system over a real sshd into another directory: the
// same tree (every file, mode, link and owner) and the same registration
// in the system's own Nix database, plus etc/NIXOS, which the remote
// install leaves to its bootloader step. A re-run sends nothing and adds
// no generation. `enter DIR -- cat /run/current-system/nixos-version`
// prints the system's version (the activation ran, in the root), and this
// machine's mounts are the same afterwards.
func TestInstallToDir(t *testing.T) {
	needRootAndNix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	local := rootDir(t)
	extras := extraFiles(t)
	rec := &testutil.Recorder{}
	opts := Options{Root: local, Nix: testNix, FlakeRef: testFlake, FlakeAttr: testAttr, ExtraFiles: extras, Chown: chown}
	if err := Run(ctx, rec, opts); err != nil {
		t.Fatal(err)
	}
	top := toplevel(t, rec)
	infos, err := testNix.Closure(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sent(t, rec), len(infos); got != want {
		t.Errorf("first run sent %d paths, want all %d of the closure", got, want)
	}

	remote := remoteInstall(ctx, t, top, infos, extras)
	gotTree, wantTree := tree(t, local), tree(t, remote)
	if e, ok := gotTree["etc/NIXOS"]; !ok || e != "file 644 0:0 " {
		t.Errorf("etc/NIXOS: %q, want an empty file (mode 644, root's)", e)
	}
	delete(gotTree, "etc/NIXOS")
	diffTrees(t, gotTree, wantTree)
	if got, want := dumpDB(ctx, t, local, infos), dumpDB(ctx, t, remote, infos); got != want {
		t.Errorf("registration of the directory (nix-store --dump-db):\n%s\nwant the remote install's:\n%s", got, want)
	}

	t.Run("re-run sends nothing", func(t *testing.T) {
		rec := &testutil.Recorder{}
		if err := Run(ctx, rec, opts); err != nil {
			t.Fatal(err)
		}
		if got := sent(t, rec); got != 0 {
			t.Errorf("re-run sent %d paths, want none", got)
		}
		want := fmt.Sprintf("%d paths: all already there", len(infos))
		if !hasPrefix(rec.Messages(event.Info), want) {
			t.Errorf("re-run said %q, want %q", rec.Messages(event.Info), want)
		}
		if !hasPrefix(rec.Messages(event.Info), "profile: generation 1 is already this system") {
			t.Errorf("re-run said %q, want the profile kept at generation 1", rec.Messages(event.Info))
		}
		diffTrees(t, withoutNIXOS(tree(t, local)), wantTree)
	})

	t.Run("enter", func(t *testing.T) {
		before := mountinfo(t)
		var out, errOut bytes.Buffer
		err := enter.Run(enter.Options{Root: local, Command: []string{"cat", "/run/current-system/nixos-version"}, Stdout: &out, Stderr: &errOut})
		if err != nil {
			t.Fatalf("enter: %v\n%s", err, errOut.String())
		}
		version, _ := os.ReadFile(filepath.Join(top, "nixos-version"))
		if got, want := out.String(), string(version); got != want || want == "" {
			t.Errorf("enter -- cat /run/current-system/nixos-version printed %q, want the system's %q; stderr:\n%s", got, want, errOut.String())
		}
		if after := mountinfo(t); after != before {
			t.Errorf("this machine's mounts changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		err = enter.Run(enter.Options{Root: local, NoActivate: true, Command: []string{"sh", "-c", "exit 3"}, Stderr: &errOut})
		if st, ok := err.(interface{ ExitStatus() int }); !ok || st.ExitStatus() != 3 {
			t.Errorf("enter -- sh -c 'exit 3' = %v, want exit status 3", err)
		}
	})
}

func withoutNIXOS(m map[string]string) map[string]string {
	delete(m, "etc/NIXOS")
	return m
}

func hasPrefix(msgs []string, prefix string) bool {
	for _, m := range msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

// toplevel is the system Run installed, from its events.
func toplevel(t *testing.T, rec *testutil.Recorder) string {
	t.Helper()
	for _, m := range rec.Messages(event.Step) {
		if top, ok := strings.CutPrefix(m, "installed "); ok {
			return strings.Fields(top)[0]
		}
	}
	t.Fatalf("no 'installed' step in %q", rec.Messages(event.Step))
	return ""
}

// sent is how many paths the copy sent, as its events say.
func sent(t *testing.T, rec *testutil.Recorder) int {
	t.Helper()
	for _, e := range rec.Events() {
		if v, ok := e.Data["paths_sent"]; ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Fatalf("no event with paths_sent in %+v", rec.Events())
	return 0
}

// remoteInstall makes root as install.Run does on an installer, over a
// real sshd on 127.0.0.1 with the agent: the closure sent, registered and
// set as the profile, the extra files and --chown (its bootloader and
// host key steps are not part of install-to-dir without --bootloader).
func remoteInstall(ctx context.Context, t *testing.T, top string, infos []nix.PathInfo, extras string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "remote")
	s := sshtest.Start(t, sshtest.Options{})
	conn, err := target.Dial(ctx, target.Options{Destination: "root@" + s.Addr, IdentityFiles: []string{s.ClientKey},
		PinnedKey: s.HostKey, SSHConfigFile: "none", ConnectTimeout: 10 * time.Second}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	agent := filepath.Join(t.TempDir(), "agent")
	build := exec.Command("go", "build", "-o", agent, "../closure/internal/testagent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build the agent: %v\n%s", err, b)
	}
	if _, err := closure.Send(ctx, conn, infos, closure.SendOptions{Agent: agent, Root: root}); err != nil {
		t.Fatal(err)
	}
	nixStore := install.FindNixStore(top, infos)
	if err := install.Register(ctx, conn, nil, install.RegisterOptions{Root: root, NixStore: nixStore, Toplevel: top, Closure: infos}); err != nil {
		t.Fatal(err)
	}
	if err := install.ExtraFiles(ctx, conn, nil, extras, root); err != nil {
		t.Fatal(err)
	}
	for _, c := range chown {
		if err := install.Chown(ctx, conn, nil, root, c.Path, c.Owner); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// tree is every path under root with its kind, mode (with the sticky
// bit), owner and, for small files and links, content; big files by size.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	snap := testutil.Snapshot(t, root, fs.ModePerm)
	for p, e := range snap {
		st, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		mode := fmt.Sprintf("%o", e.Mode)
		if st.Mode()&fs.ModeSticky != 0 {
			mode = "1" + mode
		}
		content := e.Content
		if len(content) > 256 {
			content = fmt.Sprintf("(%d bytes)", len(content))
		}
		out[p] = fmt.Sprintf("%s %s %d:%d %s", e.Kind, mode, sys.Uid, sys.Gid, content)
	}
	// The Nix database's own files differ by the time of registration.
	for p := range out {
		if strings.HasPrefix(p, "nix/var/nix/db/") || p == "nix/var/nix/db" {
			delete(out, p)
		}
	}
	return out
}

func diffTrees(t *testing.T, got, want map[string]string) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			diffs = append(diffs, "missing "+p+": "+w)
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: %s, want %s", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "extra "+p+": "+g)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 30 {
			diffs = append(diffs[:30], fmt.Sprintf("... and %d more", len(diffs)-30))
		}
		t.Errorf("the directory differs from the remote install's:\n%s", strings.Join(diffs, "\n"))
	}
}

// dumpDB is the root's registration as its own nix-store dumps it.
func dumpDB(ctx context.Context, t *testing.T, root string, infos []nix.PathInfo) string {
	t.Helper()
	var top string
	for _, info := range infos {
		if strings.Contains(info.Path, "-nixos-system-") {
			top = info.Path
		}
	}
	out, err := exec.CommandContext(ctx, "chroot", root, install.FindNixStore(top, infos), "--dump-db").Output()
	if err != nil {
		t.Fatalf("chroot %s nix-store --dump-db: %v", root, err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: empty registration", root)
	}
	return string(out)
}

// rootDir is a new directory for a root that enter mounts in. It is
// removed at the end of the test only once nothing is mounted under it in
// this machine's namespace (leftovers are unmounted first): should enter
// ever leak its bind mounts, removing the directory would otherwise
// remove this machine's /dev entries through them.
func rootDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "installdir-test-")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	t.Cleanup(func() {
		mounted := func() (points []string) {
			for _, line := range strings.Split(mountinfo(t), "\n") {
				if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], root+"/") {
					points = append(points, f[4])
				}
			}
			return points
		}
		for i := 0; i < 3 && len(mounted()) > 0; i++ {
			for _, p := range mounted() {
				exec.Command("umount", "-R", "-l", p).Run()
			}
		}
		if left := mounted(); len(left) > 0 {
			t.Errorf("mounted under %s after the test: %q; %s is left in place", root, left, dir)
			return
		}
		os.RemoveAll(dir)
	})
	return root
}

func mountinfo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRefusals: bad options and a user who is not root are refused with
// the usage or pre-flight error, before anything is built or written.
func TestRefusals(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	missing := filepath.Join(t.TempDir(), "missing")
	notRoot := func() int { return 1000 }
	for _, tc := range []struct {
		name    string
		opts    Options
		refusal bool // else a usage error
		want    string
	}{
		{"relative dir", Options{Root: "root", System: "/nix/store/x"}, false, `install-to-dir: directory "root": want an absolute path`},
		{"this machine's root", Options{Root: "/", System: "/nix/store/x"}, false, "install-to-dir: directory /: this machine's own root is not a place to install into"},
		{"neither flake nor system", Options{Root: missing}, false, "install-to-dir: want either --flake REF#NAME or --system PATH"},
		{"both", Options{Root: missing, FlakeRef: ".", FlakeAttr: "x", System: "/nix/store/x"}, false, "install-to-dir: want either --flake REF#NAME or --system PATH"},
		{"dir is a file", Options{Root: file, System: "/nix/store/x"}, false, "install-to-dir: " + file + " is not a directory"},
		{"extra files missing", Options{Root: missing, System: "/nix/store/x", ExtraFiles: missing}, false, "--extra-files " + missing + ": not a directory"},
		{"not root", Options{Root: missing, System: "/nix/store/x", euid: notRoot}, true, "pre-flight root: install-to-dir needs root (run it with sudo)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), nil, tc.opts)
			var ue *phase.UsageError
			var rf *phase.Refusal
			switch {
			case err == nil || !strings.HasPrefix(err.Error(), tc.want):
				t.Errorf("Run = %v, want an error starting %q", err, tc.want)
			case tc.refusal && !asRefusal(err, &rf):
				t.Errorf("Run = %T %v, want a *phase.Refusal", err, err)
			case !tc.refusal && !asUsage(err, &ue):
				t.Errorf("Run = %T %v, want a *phase.UsageError", err, err)
			}
			if _, err := os.Stat(missing); err == nil {
				t.Errorf("%s was created", missing)
			}
		})
	}
}

func asRefusal(err error, rf **phase.Refusal) bool { r, ok := err.(*phase.Refusal); *rf = r; return ok }
func asUsage(err error, ue **phase.UsageError) bool {
	u, ok := err.(*phase.UsageError)
	*ue = u
	return ok
}
