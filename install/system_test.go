package install

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
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
func (r *recorder) msgs(k event.Kind) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e.Msg)
		}
	}
	return out
}

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
	rec := &recorder{}
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
	if got, want := rec.msgs(event.Step), []string{"uploading the agent"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("steps %q, want %q", got, want)
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
	rec := &recorder{}
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
	if got, want := rec.msgs(event.Step), "copying extra files from "+src; len(got) != 1 || got[0] != want {
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
	rec := &recorder{}
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
	if got, want := rec.msgs(event.Info), "chown -R 1000:100 "+root+"/home/alice"; len(got) != 1 || got[0] != want {
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

	rec := &recorder{}
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
	got := rec.msgs(event.Info)
	sort.Strings(got)
	sort.Strings(wantInfo)
	if strings.Join(got, "|") != strings.Join(wantInfo, "|") {
		t.Errorf("info %q, want %q", got, wantInfo)
	}

	// Again: everything is there now and nothing is copied.
	rec = &recorder{}
	if err := CopyHostKeys(testCtx(t), c, rec, root); err != nil {
		t.Fatal(err)
	}
	for _, m := range rec.msgs(event.Info) {
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
			rec := &recorder{}
			if err := RemoveKeyFiles(testCtx(t), c, rec, tc.paths); err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.paths {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s still exists", p)
				}
			}
			if got := rec.msgs(event.Info); len(got) != tc.wantInfo || (tc.wantInfo == 1 && got[0] != "removed the key files from the installer") {
				t.Errorf("info %q, want %d report(s)", got, tc.wantInfo)
			}
		})
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file not named was removed: %v", err)
	}
}
