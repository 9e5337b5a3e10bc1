package hwconfig

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

func dialRoot(t *testing.T, s *sshtest.Server) *target.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := target.Dial(ctx, target.Options{Destination: "root@" + s.Addr, IdentityFiles: []string{s.ClientKey},
		PinnedKey: s.HostKey, SSHConfigFile: "none", ConnectTimeout: 5 * time.Second}, t.TempDir())
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const facterJSON = `{"version": 1, "system": "x86_64-linux", "hardware": {}}`

func TestGenerateHardwareConfig(t *testing.T) {
	s := sshtest.StartWithTools(t, map[string]string{
		"nixos-facter": "echo '" + facterJSON + "'\n",
		// Prints its arguments, so the test sees how it was called.
		"nixos-generate-config": `echo "{ ... }: { # args: $*"; echo '}'` + "\n",
	})
	c := dialRoot(t, s)
	failing := sshtest.StartWithTools(t, map[string]string{
		"nixos-facter":          "echo 'partial output'; echo 'facter: cannot read /sys' >&2; exit 1\n",
		"nixos-generate-config": "exit 0\n", // succeeds with no output
	})
	cf := dialRoot(t, failing)
	missing := sshtest.StartWithTools(t, nil)
	cm := dialRoot(t, missing)

	const old = "the user's earlier file\n"
	tests := []struct {
		name     string
		conn     *target.Conn
		tool     string
		existing bool   // a file is at the path already
		want     string // the file's content afterwards
		wantErr  string // "" for success
	}{
		{"facter writes the JSON", c, "nixos-facter", false, facterJSON + "\n", ""},
		{"facter replaces an earlier file", c, "nixos-facter", true, facterJSON + "\n", ""},
		{"generate-config without filesystems", c, "nixos-generate-config", false,
			"{ ... }: { # args: --show-hardware-config --no-filesystems\n}\n", ""},
		{"a failing tool leaves the file", cf, "nixos-facter", true, old, "nixos-facter on 127.0.0.1: exit 1: facter: cannot read /sys"},
		{"a failing tool creates no file", cf, "nixos-facter", false, "", "nixos-facter on 127.0.0.1: exit 1"},
		{"no output leaves the file", cf, "nixos-generate-config", true, old, "nixos-generate-config on 127.0.0.1: printed nothing"},
		{"missing tool", cm, "nixos-generate-config", true, old, "nixos-generate-config on 127.0.0.1: not found: the installer image lacks nixos-generate-config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sub", "dir", "hardware.out")
			if tc.existing {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, err := Generate(ctx, tc.conn, tc.tool, path)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
			got, rerr := os.ReadFile(path)
			switch {
			case tc.want == "" && !os.IsNotExist(rerr):
				t.Errorf("got a file %q (%v), want none", got, rerr)
			case tc.want != "" && string(got) != tc.want:
				t.Errorf("got file %q (%v), want %q", got, rerr, tc.want)
			}
			if err == nil && n != int64(len(tc.want)) {
				t.Errorf("got size %d, want %d", n, len(tc.want))
			}
			if tc.existing {
				if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
					t.Errorf("got mode %v (%v), want the earlier file's 0600", st.Mode(), err)
				}
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range entries {
				if e.Name() != "hardware.out" {
					t.Errorf("left behind %s", e.Name())
				}
			}
		})
	}
}

func TestGitIntentToAdd(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	ctx := context.Background()
	repo := t.TempDir()
	if out, err := exec.Command("git", "-C", repo, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v: %s", err, out)
	}
	// Ignored files are added too (--force), as nixos-anywhere does.
	os.WriteFile(filepath.Join(repo, ".gitignore"), []byte("*.json\n"), 0o644)
	inRepo := filepath.Join(repo, "hosts", "facter.json")
	outside := filepath.Join(t.TempDir(), "facter.json")
	for _, p := range []string{inRepo, outside} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("{}\n"), 0o644)
	}
	tests := []struct {
		path string
		want bool
	}{{inRepo, true}, {outside, false}}
	for _, tc := range tests {
		got, err := GitIntentToAdd(ctx, tc.path)
		if err != nil || got != tc.want {
			t.Errorf("GitIntentToAdd(%s) = %v, %v; want %v, nil", tc.path, got, err, tc.want)
		}
	}
	out, err := exec.Command("git", "-C", repo, "ls-files").Output()
	if err != nil || strings.TrimSpace(string(out)) != "hosts/facter.json" {
		t.Errorf("git ls-files = %q (%v), want hosts/facter.json", out, err)
	}
	// Without git on PATH nothing happens and nothing fails.
	t.Setenv("PATH", t.TempDir())
	if got, err := GitIntentToAdd(ctx, inRepo); got || err != nil {
		t.Errorf("without git: got %v, %v; want false, nil", got, err)
	}
}

func TestOptionsCheck(t *testing.T) {
	tests := []struct {
		opts Options
		want string // "" is no error
	}{
		{Options{Tool: "nixos-facter", Path: "facter.json"}, ""},
		{Options{Tool: "nixos-generate-config", Path: "hw.nix"}, ""},
		{Options{Tool: "lshw", Path: "hw.nix"}, `--generate-hardware-config "lshw": want nixos-facter or nixos-generate-config`},
		{Options{Tool: "lshw"}, `--generate-hardware-config "lshw": want nixos-facter or nixos-generate-config`},
		{Options{Tool: "nixos-facter"}, "--generate-hardware-config nixos-facter: empty path"},
	}
	for _, tt := range tests {
		err := tt.opts.Check()
		got := ""
		if err != nil {
			got = err.Error()
		}
		var ue *phase.UsageError
		if got != tt.want || (err != nil && !errors.As(err, &ue)) {
			t.Errorf("%+v.Check() = %v, want %q as a usage error", tt.opts, err, tt.want)
		}
	}
}
