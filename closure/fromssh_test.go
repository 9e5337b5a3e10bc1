package closure

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

func TestParseSSHStore(t *testing.T) {
	_, hostKey := sshtest.NewKey(t)
	keyParam := base64.StdEncoding.EncodeToString(ssh.MarshalAuthorizedKey(hostKey))
	for _, tt := range []struct {
		store string
		want  string // user|host|port|key|nix-store words|host key fingerprint; "" for an error
	}{
		{"ssh://root@build.example", "root|build.example|0||nix-store|"},
		{"ssh://build.example", "|build.example|0||nix-store|"},
		{"ssh://alice@10.1.2.3:2222/", "alice|10.1.2.3|2222||nix-store|"},
		{"ssh://[2001:db8::1]:22", "|2001:db8::1|22||nix-store|"},
		{"ssh-ng://root@h", "root|h|0||nix-store|"},
		{"ssh-ng://h?remote-program=/run/current-system/sw/bin/nix-daemon", "|h|0||/run/current-system/sw/bin/nix-store|"},
		{"ssh://h?remote-program=sudo%20/nix/var/nix/profiles/default/bin/nix-store", "|h|0||sudo /nix/var/nix/profiles/default/bin/nix-store|"},
		{"ssh://h?ssh-key=/home/a/.ssh/id_build&compress=true", "|h|0|/home/a/.ssh/id_build|nix-store|"},
		{"ssh://h?base64-ssh-public-host-key=" + keyParam, "|h|0||nix-store|" + ssh.FingerprintSHA256(hostKey)},
		{"ssh://h:0", ""},
		{"ssh://h:65536", ""},
		{"ssh://h:twentytwo", ""},
		{"ssh://h?remote-store=local%3Froot%3D/mnt", ""},
		{"ssh://h?max-connections=2", ""},
		{"ssh://h?ssh-key=", ""},
		{"ssh://h?ssh-key=/a&ssh-key=/b", ""},
		{"ssh://h?compress=maybe", ""},
		{"ssh://h?base64-ssh-public-host-key=bm90IGEga2V5", ""},
		{"ssh://h?base64-ssh-public-host-key=%%%", ""},
		{"ssh-ng://h?remote-program=nix-store", ""},
		{"ssh://", ""},
		{"ssh:///nix/store", ""},
		{"ssh://h/some/path", ""},
		{"ssh://h#frag", ""},
		{"ssh://u:secret@h", ""},
		{"ssh://@h", ""},
		{"ssh://-oProxyCommand=x", ""},
		{"ssh://-l@h", ""},
		{"ssh:h", ""},
		{"http://h/", ""},
		{"daemon", ""},
	} {
		u, err := ParseSSHStore(tt.store)
		got := ""
		if err == nil {
			fp := ""
			if u.HostKey != nil {
				fp = ssh.FingerprintSHA256(u.HostKey)
			}
			got = fmt.Sprintf("%s|%s|%d|%s|%s|%s", u.User, u.Host, u.Port, u.SSHKey, strings.Join(u.NixStore, " "), fp)
		} else if !strings.HasPrefix(err.Error(), "--from ") {
			t.Errorf("ParseSSHStore(%q): error %q does not name --from", tt.store, err)
		}
		if got != tt.want {
			t.Errorf("ParseSSHStore(%q) = %q (%v), want %q", tt.store, got, err, tt.want)
		}
	}
}

// sshStoreOnly builds a fresh test closure, copies it into a Nix store of
// its own (DIR/nix, a real store with its database, as a host's /nix) and
// deletes it from the local store, so that only that store has it.
func sshStoreOnly(t *testing.T) (top, dir string, infos []nix.PathInfo) {
	t.Helper()
	top, infos = nixtest.Closure(t, fmt.Sprintf("from-ssh-%d", time.Now().UnixNano()))
	dir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"--extra-experimental-features", "nix-command", "--option", "substituters", "", "copy", "--no-check-sigs", "--to", "local?root=" + dir, top}
	if out, err := exec.CommandContext(ctx, "nix", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	deleteLocal(t, infos)
	return top, dir, infos
}

// deleteLocal deletes infos' paths (and their derivers, which keep the
// text file alive) from the local store.
func deleteLocal(t *testing.T, infos []nix.PathInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"--option", "substituters", "", "--delete"}
	for _, info := range infos {
		args = append(args, info.Path)
		if info.Deriver != "" {
			args = append(args, info.Deriver)
		}
	}
	if out, err := exec.CommandContext(ctx, "nix-store", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --delete the test closure: %v\n%s", err, out)
	}
	for _, info := range infos {
		if _, err := os.Lstat(info.Path); err == nil {
			t.Fatalf("%s is still in the local store after nix-store --delete", info.Path)
		}
	}
}

// countingRunner counts the commands (SSH sessions) run through r.
type countingRunner struct {
	r Runner
	n atomic.Int64
}

func (c *countingRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	c.n.Add(1)
	return c.r.Run(ctx, cmd, stdin, stdout, stderr)
}

// dialStore connects as root to the store host s.
func dialStore(t *testing.T, s *sshtest.Server) *target.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := target.Dial(ctx, target.Options{
		Destination: "root@" + s.Addr, IdentityFiles: []string{s.ClientKey}, PinnedKey: s.HostKey,
		SSHConfigFile: "none", ConnectTimeout: 5 * time.Second,
	}, t.TempDir())
	if err != nil {
		t.Fatalf("dial the store host %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// --from ssh://: a loopback sshd whose /nix is a real Nix store holding
// the closure (and this machine's store not): the path-info read there
// is what the local store had registered, every path reaches the target
// with its NAR hash, and the local store gains nothing; a path changed on
// that host after it was registered (same size, other bytes) is refused,
// naming the path, and not committed on the target.
func TestSendFromSSHStore(t *testing.T) {
	sshtest.Need(t)
	top, dir, want := sshStoreOnly(t)
	storeHost := sshtest.Start(t, sshtest.Options{Binds: map[string]string{"/nix": filepath.Join(dir, "nix")}})
	targetHost := sshtest.Start(t, sshtest.Options{})
	for _, scheme := range []string{"ssh", "ssh-ng"} {
		t.Run(scheme, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			u, err := ParseSSHStore(fmt.Sprintf("%s://root@%s", scheme, storeHost.Addr))
			if err != nil {
				t.Fatal(err)
			}
			runs := &countingRunner{r: dialStore(t, storeHost)}
			src := NewSSHStore(u, runs)
			defer src.Close()
			got, err := src.Closure(ctx, top)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
				t.Fatalf("closure from the ssh store\n got %s\nwant %s", g, w)
			}
			root := t.TempDir()
			opts := SendOptions{Agent: agentBin, Root: root, Jobs: 2, Source: src, Sink: &testutil.Recorder{}}
			stats, err := Send(ctx, dialStore(t, targetHost), got, opts)
			if err != nil {
				t.Fatal(err)
			}
			if stats.Sent != len(want) {
				t.Errorf("sent %d paths, want %d", stats.Sent, len(want))
			}
			checkFromCache(t, root, want)
			// One session for the path-info, one per channel for the NARs.
			if n := runs.n.Load(); n > 3 {
				t.Errorf("%d sessions on the store host for %d paths with 2 channels, want at most 3", n, len(want))
			}
			// A path the host cannot dump fails alone; the next NAR works.
			bad := want[0]
			bad.Path = nix.StoreDir + "/" + strings.Repeat("0", 32) + "-absent"
			if _, err := src.NAR(ctx, bad, io.Discard); err == nil || !strings.Contains(err.Error(), "nix-store --dump on") || !strings.Contains(err.Error(), bad.Path) {
				t.Errorf("NAR of an absent path: %v, want nix-store's failure naming it", err)
			}
			if res, err := src.NAR(ctx, want[0], io.Discard); err != nil || res.Hash != want[0].NarHash {
				t.Errorf("NAR after a failed one: %v (%v), want %v", res.Hash, err, want[0].NarHash)
			}
		})
	}

	t.Run("not-in-store", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		u, _ := ParseSSHStore("ssh://root@" + storeHost.Addr)
		missing := nix.StoreDir + "/" + strings.Repeat("0", 32) + "-absent"
		_, err := NewSSHStore(u, dialStore(t, storeHost)).Closure(ctx, missing)
		if err == nil || !strings.Contains(err.Error(), "is not valid") {
			t.Errorf("got %v, want nix-store's 'is not valid' for %s", err, missing)
		}
	})

	t.Run("changed-on-host", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		blob := pick(t, want, "blob-a")[0]
		file := filepath.Join(dir, blob.Path, "random")
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x55
		if err := os.WriteFile(file, data, 0o444); err != nil {
			t.Fatal(err)
		}
		u, _ := ParseSSHStore("ssh://root@" + storeHost.Addr)
		src := NewSSHStore(u, dialStore(t, storeHost))
		got, err := src.Closure(ctx, top)
		if err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		_, err = Send(ctx, &localRunner{}, got, SendOptions{Agent: agentBin, Root: root, Source: src})
		if err == nil || !strings.Contains(err.Error(), blob.Path) || !strings.Contains(err.Error(), "the store registered "+blob.NarHash.String()) {
			t.Errorf("got %v, want an error naming %s and its registered hash", err, blob.Path)
		}
		if _, ok := records(t, root)[blob.Path]; ok {
			t.Errorf("%s committed on the target though it changed on the store host", blob.Path)
		}
		checkNoPartial(t, root, true)
	})
}
