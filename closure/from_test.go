package closure

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// cacheOnly builds a fresh test closure, copies it into a binary cache
// (compression c) and deletes it from the local store, so that only the
// cache has it: what --from installs from.
func cacheOnly(t *testing.T, c string) (top, dir string, infos []nix.PathInfo) {
	t.Helper()
	top, infos = nixtest.Closure(t, fmt.Sprintf("from-%s-%d", c, time.Now().UnixNano()))
	dir = binaryCache(t, c, top)
	deleteLocal(t, infos)
	return top, dir, infos
}

// checkFromCache checks that every path of infos is committed under root
// with its NAR hash and path-info, and that none is in the local store.
func checkFromCache(t *testing.T, root string, infos []nix.PathInfo) {
	t.Helper()
	recs := records(t, root)
	for _, info := range infos {
		res, err := nar.HashPath(filepath.Join(root, info.Path))
		if err != nil {
			t.Errorf("%s on the target: %v", info.Path, err)
			continue
		}
		if got, want := fmt.Sprintf("%s/%d", res.Hash, res.Size), fmt.Sprintf("%s/%d", info.NarHash, info.NarSize); got != want {
			t.Errorf("%s: target NAR %s, want %s", info.Path, got, want)
		}
		rec := recs[info.Path]
		if got, want := fmt.Sprintf("%s %s %s", rec.NarHash, strings.Join(rec.References, ","), rec.Deriver),
			fmt.Sprintf("%s %s %s", info.NarHash, strings.Join(info.References, ","), info.Deriver); got != want {
			t.Errorf("%s: record %s, want %s", info.Path, got, want)
		}
		if _, err := os.Lstat(info.Path); err == nil {
			t.Errorf("%s landed in the local store", info.Path)
		}
	}
	checkNoPartial(t, root, false)
}

// --from a binary cache: the closure's path-info comes from its narinfo
// files (the same as the local store had before the paths were deleted),
// its NARs are fetched, unpacked and streamed, and the local store gains
// nothing; with the cache also given to the target as a substituter, the
// agent fetches every path itself and nothing is streamed.
func TestSendFromBinaryCache(t *testing.T) {
	sshtest.Need(t)
	s := sshtest.Start(t, sshtest.Options{})
	p := sshtest.StartProxy(t, s.Addr)
	for _, c := range []string{"xz", "zstd"} {
		top, dir, want := cacheOnly(t, c)
		server := startCache(t, dir)
		for _, tc := range []struct {
			name, store string
			substitute  bool
		}{
			{"file", "file://" + dir, false},
			{"http", server.URL, false},
			{"http-substitute", server.URL + "/", true},
		} {
			t.Run(c+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				src, err := OpenBinaryCache(tc.store)
				if err != nil {
					t.Fatal(err)
				}
				got, err := src.Closure(ctx, top)
				if err != nil {
					t.Fatal(err)
				}
				if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
					t.Fatalf("closure from the cache\n got %s\nwant %s", g, w)
				}
				root := t.TempDir()
				opts := SendOptions{Agent: agentBin, Root: root, Jobs: 2, Source: src, BufferLimit: 1 << 20, Sink: &testutil.Recorder{}}
				if tc.substitute {
					opts.Substitute = fastSubstitute(tc.store)
				}
				stats, err := Send(ctx, dialVia(t, s, p), got, opts)
				if err != nil {
					t.Fatal(err)
				}
				checkFromCache(t, root, want)
				wantSent, wantSubst := len(want), 0
				if tc.substitute {
					wantSent, wantSubst = 0, len(want)
				}
				if stats.Sent != wantSent || stats.Substituted != wantSubst {
					t.Errorf("sent %d, substituted %d; want %d and %d", stats.Sent, stats.Substituted, wantSent, wantSubst)
				}
			})
		}
	}
}

// A NAR or narinfo in the --from cache that is not what it claims stops
// the copy before the path is committed, naming the path.
func TestSendFromBinaryCacheRefusesTampering(t *testing.T) {
	top, dir, infos := cacheOnly(t, "none")
	blob := pick(t, infos, "blob-a")[0]
	for _, f := range []fault{faultCorrupt, faultTruncated, faultTrailing, faultWrongPath, faultDotDot, faultOtherHost, faultNotFound} {
		t.Run(string(f), func(t *testing.T) {
			server := startCache(t, dir)
			server.fail(blob.Path, f)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			src, err := OpenBinaryCache(server.URL)
			if err != nil {
				t.Fatal(err)
			}
			got, err := src.Closure(ctx, top)
			if err == nil {
				root := t.TempDir()
				_, err = Send(ctx, &localRunner{}, got, SendOptions{Agent: agentBin, Root: root, Source: src})
				if _, ok := records(t, root)[blob.Path]; ok {
					t.Errorf("%s committed on the target from a tampered cache", blob.Path)
				}
				checkNoPartial(t, root, true)
			}
			if err == nil || !strings.Contains(err.Error(), blob.Path) {
				t.Errorf("got %v, want an error naming %s", err, blob.Path)
			}
		})
	}
	// A file:// cache whose NAR file was changed on disk.
	t.Run("file-corrupt", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		src, err := OpenBinaryCache("file://" + dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := src.Closure(ctx, top)
		if err != nil {
			t.Fatal(err)
		}
		narFile := filepath.Join(dir, src.narOf[blob.Path].URL)
		data, err := os.ReadFile(narFile)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)-100] ^= 0x55
		if err := os.WriteFile(narFile, data, 0o644); err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		_, err = Send(ctx, &localRunner{}, got, SendOptions{Agent: agentBin, Root: root, Source: src})
		if err == nil || !strings.Contains(err.Error(), blob.Path) {
			t.Errorf("got %v, want an error naming %s", err, blob.Path)
		}
		if _, ok := records(t, root)[blob.Path]; ok {
			t.Errorf("%s committed on the target from a corrupt NAR file", blob.Path)
		}
	})
}

func TestOpenBinaryCacheRefuses(t *testing.T) {
	for _, store := range []string{"ssh://host", "file://relative/dir", "file:///a/../b", "s3://bucket", "http://user@host/", "daemon"} {
		if _, err := OpenBinaryCache(store); err == nil {
			t.Errorf("OpenBinaryCache(%q) took it, want an error", store)
		}
	}
}
