package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/vmtests/vm"
)

// Where the guest finds the binary cache: QEMU's guestfwd relays
// cacheGuestAddr to the test's server on 127.0.0.1. The substitute scenario
// of vmtests/flake names cacheURL in nix.settings.substituters; nothing on
// this machine connects to it.
const (
	cacheGuestAddr = "10.0.2.100:80"
	cacheURL       = "http://10.0.2.100/"
)

// TestInstallSubstitutes installs a system whose closure is in a binary
// cache but for its toplevel and one more path: the installer fetches the
// cached paths from the cache itself (the configuration's
// nix.settings.substituters; the local Nix has none) and nixos-via streams
// the other two. The cache server saw one narinfo and one NAR request per
// cached path and no NAR request for the others, the summary says so, the
// system boots and every path is registered as it is here.
func TestInstallSubstitutes(t *testing.T) {
	const scenario = "substitute"
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	infos := systemClosure(t, ctx, w, scenario)
	cached, streamed := splitForCache(t, infos)
	cache := startCountingCache(t, writeBinaryCache(t, ctx, cached))
	m := w.start(t, vm.Config{Name: scenario, MemoryMiB: 512,
		GuestForwards: []vm.GuestForward{{Guest: cacheGuestAddr, Host: cache.addr}}}, 1)

	out := mustSucceed(t, ctx, m, "", nil, w.installArgs(m, scenario)...)
	var unsaid []string
	for _, want := range []string{
		fmt.Sprintf("substitute: %d paths", len(cached)),
		fmt.Sprintf("from %s, %d streamed", cacheURL, len(streamed)),
		fmt.Sprintf("%d from the binary caches", len(cached)),
		fmt.Sprintf("%d sent (", len(streamed)),
	} {
		if !strings.Contains(out, want) {
			unsaid = append(unsaid, want)
		}
	}
	if len(unsaid) > 0 {
		t.Errorf("the output does not say %q:\n%s", unsaid, out)
	}
	for _, p := range cached {
		if got := cache.count(p, "narinfo"); got != 1 {
			t.Errorf("narinfo requests for the cached %s = %d, want 1", p, got)
		}
		if got := cache.count(p, "nar"); got != 1 {
			t.Errorf("NAR requests for the cached %s = %d, want 1", p, got)
		}
	}
	for _, p := range streamed {
		if got := cache.count(p, "narinfo"); got < 1 {
			t.Errorf("narinfo requests for the uncached %s = %d, want it asked for", p, got)
		}
	}
	if other := cache.unknown(); len(other) > 0 {
		t.Errorf("requests for what the cache does not hold: %q", other)
	}
	checkInstalled(t, ctx, w, m, scenario, out)
	// Registration as here: narHash, narSize, deriver and references of
	// every path, whichever way it came.
	c := dialInstalled(t, ctx, w, m)
	paths := append(slices.Clone(cached), streamed...)
	want, err := exec.CommandContext(ctx, "nix-store", append([]string{"--dump-db"}, paths...)...).Output()
	if err != nil {
		t.Fatalf("nix-store --dump-db here: %v", err)
	}
	if got := run(t, ctx, c, "nix-store --dump-db "+strings.Join(paths, " ")); got != strings.TrimSpace(string(want)) {
		t.Errorf("registration on the installed system:\n%s\nwant (this machine's):\n%s", got, want)
	}
}

// pathInfo is one entry of `nix path-info --json`.
type pathInfo struct {
	Path       string   `json:"path"`
	References []string `json:"references"`
}

// systemClosure builds the scenario's system here and returns its closure,
// the toplevel first.
func systemClosure(t *testing.T, ctx context.Context, w *world, scenario string) []pathInfo {
	t.Helper()
	attr := w.flake + "#nixosConfigurations." + scenario + ".config.system.build.toplevel"
	nixArgs := []string{"--extra-experimental-features", "nix-command flakes", "--option", "substituters", ""}
	out, err := exec.CommandContext(ctx, "nix", append(nixArgs, "build", "--no-link", "--json", attr)...).Output()
	if err != nil {
		t.Fatalf("nix build %s: %v", attr, err)
	}
	var built []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(out, &built); err != nil || len(built) != 1 || built[0].Outputs["out"] == "" {
		t.Fatalf("nix build --json: %v\n%s", err, out)
	}
	top := built[0].Outputs["out"]
	out, err = exec.CommandContext(ctx, "nix", append(nixArgs, "path-info", "--json", "-r", top)...).Output()
	if err != nil {
		t.Fatalf("nix path-info -r %s: %v", top, err)
	}
	var infos []pathInfo
	if err := json.Unmarshal(out, &infos); err != nil {
		t.Fatalf("nix path-info --json: %v", err)
	}
	slices.SortFunc(infos, func(a, b pathInfo) int {
		if (a.Path == top) != (b.Path == top) {
			if a.Path == top {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Path, b.Path)
	})
	if len(infos) < 3 || infos[0].Path != top {
		t.Fatalf("closure of %s: %d paths, want the toplevel and at least two more", top, len(infos))
	}
	return infos
}

// splitForCache leaves the toplevel and the first path that nothing but
// the toplevel references out of the cache; the cached rest is closed
// under references.
func splitForCache(t *testing.T, infos []pathInfo) (cached, streamed []string) {
	t.Helper()
	top := infos[0].Path
	referenced := map[string]bool{}
	for _, in := range infos[1:] {
		for _, r := range in.References {
			if r != in.Path {
				referenced[r] = true
			}
		}
	}
	streamed = []string{top}
	for _, in := range infos[1:] {
		if len(streamed) == 1 && !referenced[in.Path] {
			streamed = append(streamed, in.Path)
			continue
		}
		cached = append(cached, in.Path)
	}
	if len(streamed) != 2 {
		t.Fatalf("every path of the closure but the toplevel is referenced by another: %v", infos)
	}
	t.Logf("cached: %q; streamed: %q", cached, streamed)
	return cached, streamed
}

// writeBinaryCache copies paths (closed under references) into a new xz
// binary cache with this machine's Nix, never asking a substituter.
func writeBinaryCache(t *testing.T, ctx context.Context, paths []string) string {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"--extra-experimental-features", "nix-command", "--option", "substituters", "",
		"copy", "--to", "file://" + dir + "?compression=xz"}, paths...)
	if out, err := exec.CommandContext(ctx, "nix", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix copy --to file://%s: %v\n%s", dir, err, out)
	}
	return dir
}

// countingCache serves a binary cache directory on 127.0.0.1 and counts
// the narinfo and NAR requests per store path.
type countingCache struct {
	addr   string            // 127.0.0.1:PORT
	dir    string            // the cache
	byFile map[string]string // "<hash>.narinfo" and "nar/<file>" -> store path
	mu     sync.Mutex
	counts map[string]int // "narinfo <path>", "nar <path>", "other <url path>"
}

func startCountingCache(t *testing.T, dir string) *countingCache {
	t.Helper()
	c := &countingCache{dir: dir, byFile: map[string]string{}, counts: map[string]int{}}
	infos, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if err != nil || len(infos) == 0 {
		t.Fatalf("no narinfo in %s: %v", dir, err)
	}
	for _, f := range infos {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var path, url string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "StorePath: "); ok {
				path = v
			} else if v, ok := strings.CutPrefix(l, "URL: "); ok {
				url = v
			}
		}
		if path == "" || url == "" {
			t.Fatalf("%s: no StorePath or URL:\n%s", f, b)
		}
		c.byFile[filepath.Base(f)], c.byFile[url] = path, path
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = l.Addr().String()
	srv := &http.Server{Handler: c, IdleTimeout: 30 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return c
}

func (c *countingCache) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	key := "other " + name
	if p, ok := c.byFile[name]; ok {
		key = "nar " + p
		if strings.HasSuffix(name, ".narinfo") {
			key = "narinfo " + p
		}
	} else if h, ok := strings.CutSuffix(name, ".narinfo"); ok && !strings.Contains(h, "/") {
		key = "narinfo " + h // a path the cache lacks, by its hash part
	}
	c.mu.Lock()
	c.counts[key]++
	c.mu.Unlock()
	if name == "" || strings.Contains(name, "..") {
		http.NotFound(rw, r)
		return
	}
	http.ServeFile(rw, r, filepath.Join(c.dir, filepath.FromSlash(name)))
}

// count is how often kind ("narinfo", "nar") was asked for of path.
func (c *countingCache) count(path, kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.counts[kind+" "+path]
	if kind == "narinfo" {
		hash, _, _ := strings.Cut(strings.TrimPrefix(path, "/nix/store/"), "-")
		n += c.counts["narinfo "+hash]
	}
	return n
}

// unknown lists the requests for files the cache does not have, but
// nix-cache-info and the narinfos of paths it lacks.
func (c *countingCache) unknown() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.counts {
		if name, ok := strings.CutPrefix(k, "other "); ok && name != "nix-cache-info" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
