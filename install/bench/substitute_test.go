package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// cacheServer serves binary cache directories on 127.0.0.1, each under
// its own prefix (/xz, /zstd), all through one link of a given rate (a
// cache one hop away), counting the bytes it sends.
type cacheServer struct {
	url  string
	dirs map[string]string // prefix -> directory
	rate float64           // bytes a second, shared by every response
	sent atomic.Int64

	mu   sync.Mutex
	next time.Time // when the link is free again
}

func startCacheServer(b *testing.B, dirs map[string]string, bytesPerSec float64) *cacheServer {
	c := &cacheServer{dirs: dirs, rate: bytesPerSec}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: c}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	c.url = "http://" + ln.Addr().String()
	return c
}

// wait holds a write of n bytes until the link has carried the ones before.
func (c *cacheServer) wait(n int) {
	c.mu.Lock()
	now := time.Now()
	if c.next.Before(now) {
		c.next = now
	}
	c.next = c.next.Add(time.Duration(float64(n) / c.rate * float64(time.Second)))
	d := time.Until(c.next)
	c.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
}

func (c *cacheServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	clean := path.Clean("/" + r.URL.Path)
	prefix, name, _ := strings.Cut(strings.TrimPrefix(clean, "/"), "/")
	dir, ok := c.dirs[prefix]
	if !ok || name == "" {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			c.wait(n)
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			c.sent.Add(int64(n))
		}
		if err != nil {
			return
		}
	}
}

// targetNix writes the remote programs nix copy starts on the target
// (nix-store --serve for ssh://, nix-daemon --stdio for ssh-ng://) with
// the target's Nix pointed at cache, and at nothing else: the binary
// cache's narinfos are unsigned, and Nix's narinfo disk cache must not
// carry lookups from one round to the next.
func (e *env) targetNix(b *testing.B, name, program, cache string) string {
	p := filepath.Join(e.work, name)
	conf := fmt.Sprintf("substituters = %s\nrequire-sigs = false\nnarinfo-cache-positive-ttl = 0\nnarinfo-cache-negative-ttl = 0\n", cache)
	script := fmt.Sprintf("#!/bin/sh\nNIX_CONFIG='%s'\nexport NIX_CONFIG\nexec %s \"$@\"\n", conf, program)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		b.Fatal(err)
	}
	return p
}

// checkComplete checks that every path is in place under root (and a
// sample by NAR hash); registered says the target's Nix DB has them all.
func (e *env) checkComplete(b *testing.B, name, root string, registered bool) {
	b.Helper()
	for _, p := range e.paths {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			b.Fatalf("%s: %s missing on the target: %v", name, p, err)
		}
	}
	e.checkCopy(b, name, root)
	if registered {
		_, err := nix.CLI{Args: []string{"--store", "local?root=" + root}}.PathInfo(context.Background(), e.paths...)
		if err != nil {
			b.Fatalf("%s: not registered on the target: %v", name, err)
		}
	}
}

type substResult struct {
	result
	cache int64 // bytes the cache sent
}

// BenchmarkSubstitute compares, over a slow uplink from here to the
// target and a 1 Gbit/s cache beside the target, nixos-via with and
// without substitution, nixos-anywhere's own command (nix copy
// --substitute-on-destination to ssh://, the target's Nix substituting
// from the same cache) and nix copy to ssh-ng://. NIXOS_VIA_BENCH_OWN
// lists the paths the caches lack; NIXOS_VIA_BENCH_CACHES the xz and zstd
// cache directories. Run it with NIXOS_VIA_BENCH_SYSTEM=1 bench.sh.
func BenchmarkSubstitute(b *testing.B) {
	ownFile, caches := os.Getenv("NIXOS_VIA_BENCH_OWN"), strings.Split(os.Getenv("NIXOS_VIA_BENCH_CACHES"), ",")
	if ownFile == "" || len(caches) != 2 {
		b.Skip("set NIXOS_VIA_BENCH_OWN and NIXOS_VIA_BENCH_CACHES (NIXOS_VIA_BENCH_SYSTEM=1 install/bench/bench.sh does)")
	}
	e := setup(b)
	ownData, err := os.ReadFile(ownFile)
	if err != nil {
		b.Fatal(err)
	}
	own := strings.Fields(string(ownData))
	infos, err := nix.CLI{Args: []string{"--store", e.store}}.PathInfo(context.Background(), own...)
	if err != nil {
		b.Fatal(err)
	}
	var ownBytes uint64
	for _, info := range infos {
		ownBytes += info.NarSize
	}
	cache := startCacheServer(b, map[string]string{"xz": caches[0], "zstd": caches[1]}, 1e9/8)
	xzURL, zstdURL := cache.url+"/xz", cache.url+"/zstd"
	serve := e.targetNix(b, "nix-store-cached", "nix-store", xzURL)
	daemon := e.targetNix(b, "nix-daemon-cached", "nix-daemon", xzURL)
	rounds := 1
	if n, err := strconv.Atoi(os.Getenv("NIXOS_VIA_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	uplinks := []float64{20, 100}
	if s := os.Getenv("NIXOS_VIA_BENCH_UPLINKS"); s != "" {
		uplinks = nil
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				b.Fatalf("NIXOS_VIA_BENCH_UPLINKS=%q: %v", s, err)
			}
			uplinks = append(uplinks, v)
		}
	}
	nixCopy := func(name, root, url string, options ...string) result {
		r := e.run(b, name, fmt.Sprintf(
			"nix --extra-experimental-features nix-command --option substituters '' %s copy --no-check-sigs --substitute-on-destination --from %s --to '%s' $(cat %s)",
			strings.Join(options, " "), e.store, url, e.pathsFile), "NIX_SSHOPTS="+e.sshOpts())
		e.checkComplete(b, name, root, true)
		return r
	}
	type method struct {
		name string
		run  func() result
	}
	methods := []method{
		{"nixos-via, substitute from the xz cache", func() result {
			root := e.freshRoot(b, "via-xz")
			r := e.viaSend(b, "via xz", root, 2, "--caches", xzURL)
			e.checkComplete(b, "via xz", root, false)
			return r
		}},
		{"nixos-via, substitute from the zstd cache", func() result {
			root := e.freshRoot(b, "via-zstd")
			r := e.viaSend(b, "via zstd", root, 2, "--caches", zstdURL)
			e.checkComplete(b, "via zstd", root, false)
			return r
		}},
		{"nixos-via, no substitution", func() result {
			root := e.freshRoot(b, "via-stream")
			r := e.viaSend(b, "via stream", root, 2)
			e.checkComplete(b, "via stream", root, false)
			return r
		}},
		{"nixos-anywhere's command: nix copy --substitute-on-destination ssh:// (xz cache)", func() result {
			root := e.freshRoot(b, "nix-ssh")
			r := nixCopy("nix copy ssh://", root, fmt.Sprintf("ssh://root@127.0.0.1?remote-store=local?root=%s&compress=true&remote-program=%s", root, serve))
			r.compression = "ssh -C"
			return r
		}},
		{"nix copy --substitute-on-destination ssh-ng:// (xz cache)", func() result {
			root := e.freshRoot(b, "nix-ssh-ng")
			r := nixCopy("nix copy ssh-ng://", root, fmt.Sprintf("ssh-ng://root@127.0.0.1?remote-store=local?root=%s&remote-program=%s", root, daemon))
			r.compression = "none"
			return r
		}},
		// Before Nix 2.20, ssh-ng:// ignores --substitute-on-destination
		// and substitutes on the destination only with
		// builders-use-substitutes (NixOS/nix#9591, fixed by #9600).
		{"nix copy ssh-ng:// with builders-use-substitutes (xz cache)", func() result {
			root := e.freshRoot(b, "nix-ssh-ng-bus")
			r := nixCopy("nix copy ssh-ng:// builders-use-substitutes", root, fmt.Sprintf("ssh-ng://root@127.0.0.1?remote-store=local?root=%s&remote-program=%s", root, daemon),
				"--option builders-use-substitutes true")
			r.compression = "none"
			return r
		}},
	}
	if only := os.Getenv("NIXOS_VIA_BENCH_ONLY"); only != "" {
		var keep []method
		for _, m := range methods {
			for _, o := range strings.Split(only, ",") {
				if strings.Contains(m.name, o) {
					keep = append(keep, m)
					break
				}
			}
		}
		methods = keep
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d paths, %.0f MB of NAR, %d of them (%.1f MB) not on the caches; cache at 1 Gbit/s; best of %d rounds\n",
		len(e.paths), float64(e.narBytes)/1e6, len(own), float64(ownBytes)/1e6, rounds)
	b.ResetTimer()
	for _, mbit := range uplinks {
		e.proxy.SetRate(mbit * 1e6 / 8)
		all := make([][]substResult, len(methods))
		for round := 0; round < rounds; round++ {
			for i, m := range methods {
				before := cache.sent.Load()
				r := m.run()
				all[i] = append(all[i], substResult{r, cache.sent.Load() - before})
			}
		}
		best := make([]substResult, len(methods))
		for i, rs := range all {
			sort.Slice(rs, func(a, c int) bool { return rs[a].wall < rs[c].wall })
			best[i] = rs[0]
		}
		var anywhere time.Duration
		for i, m := range methods {
			if strings.HasPrefix(m.name, "nixos-anywhere") {
				anywhere = best[i].wall
			}
		}
		fmt.Fprintf(&sb, "\nUplink %g Mbit/s:\n\n", mbit)
		fmt.Fprintln(&sb, "| method | time to a complete, registered closure | over the uplink | of the NAR | from the cache | CPU client + server | speed vs nixos-anywhere's command |")
		fmt.Fprintln(&sb, "|---|---|---|---|---|---|---|")
		for i, r := range best {
			ratio := "–"
			if anywhere > 0 {
				ratio = fmt.Sprintf("%.2f×", anywhere.Seconds()/r.wall.Seconds())
			}
			fmt.Fprintf(&sb, "| %s | %.2f s | %.1f MB | %.1f %% | %.1f MB | %.1f + %.1f s | %s |\n", methods[i].name, r.wall.Seconds(),
				float64(r.wire)/1e6, 100*float64(r.wire)/float64(e.narBytes), float64(r.cache)/1e6, r.clientCPU.Seconds(), r.serverCPU.Seconds(), ratio)
		}
	}
	b.StopTimer()
	fmt.Print(sb.String())
}
