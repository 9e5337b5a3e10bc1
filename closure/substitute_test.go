package closure

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// pick returns the infos whose path names contain one of the names.
func pick(t *testing.T, infos []nix.PathInfo, names ...string) []nix.PathInfo {
	t.Helper()
	var out []nix.PathInfo
	for _, n := range names {
		found := false
		for _, info := range infos {
			if strings.Contains(info.Path, "-via-"+n+"-") {
				out = append(out, info)
				found = true
			}
		}
		if !found {
			t.Fatalf("no path named %s in the closure", n)
		}
	}
	return out
}

func paths(infos []nix.PathInfo) []string {
	var out []string
	for _, info := range infos {
		out = append(out, info.Path)
	}
	return out
}

// lastProgress is the last progress event sink received.
func lastProgress(sink *testutil.Recorder) event.Event {
	var last event.Event
	for _, e := range sink.Events() {
		if e.Kind == event.Progress {
			last = e
		}
	}
	return last
}

// fastSubstitute keeps the tests' waits short.
func fastSubstitute(caches ...string) SubstituteOptions {
	return SubstituteOptions{Caches: caches, ConnectTimeout: 2 * time.Second, StallTimeout: 2 * time.Second}
}

// The cache holds mid with leaf, its reference, and the blobs: those come
// from it, in every compression Nix writes; top, single and the text file
// (which mid copies but does not refer to) are streamed.
func TestSendSubstitutesFromCache(t *testing.T) {
	_, infos := nixtest.Closure(t, "subst")
	cached := pick(t, infos, "mid", "blob-a", "blob-b")
	for _, compression := range []string{"xz", "zstd", "bzip2", "none"} {
		t.Run(compression, func(t *testing.T) {
			cache := startCache(t, binaryCache(t, compression, paths(cached)...))
			root := t.TempDir()
			sink := &testutil.Recorder{}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			stats, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: agentBin, Root: root, Jobs: 2, Sink: sink, Substitute: fastSubstitute(cache.URL)})
			if err != nil {
				t.Fatal(err)
			}
			checkReceived(t, root, infos)
			checkNoPartial(t, root, false)
			if stats.Substituted != 4 || stats.Sent != 3 {
				t.Errorf("substituted %d, sent %d; want 4 and 3", stats.Substituted, stats.Sent)
			}
			if got, want := cache.narinfos.Load(), int64(len(infos)); got != want {
				t.Errorf("%d narinfo requests, want %d (one per missing path)", got, want)
			}
			if got := cache.nars.Load(); got != 4 {
				t.Errorf("%d NAR requests, want 4", got)
			}
			done := sink.Messages(event.Done)
			if len(done) == 0 || !strings.HasPrefix(done[len(done)-1], "copy closure: 4 paths (") || !strings.Contains(done[len(done)-1], "from the caches, sent 3 paths") {
				t.Errorf("last done event %q, want it to name both sources", done)
			}
			last := lastProgress(sink)
			if last.Done != last.Total || last.Data["paths_substituted"] != "4" || last.Data["paths"] != fmt.Sprint(len(infos)) {
				t.Errorf("last progress %+v, want all bytes done, 4 of %d paths substituted", last, len(infos))
			}

			again, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: agentBin, Root: root, Substitute: fastSubstitute(cache.URL)})
			if err != nil {
				t.Fatal(err)
			}
			if again.Present != len(infos) || again.Sent+again.Substituted != 0 {
				t.Errorf("re-run %+v, want every path present (substituted ones are recorded as valid)", again)
			}
		})
	}
}

// A poisoned or broken answer for a path changes nothing: the path comes
// by the stream, identical, and the others still come from the cache.
func TestSendStreamsWhatTheCacheGetsWrong(t *testing.T) {
	_, infos := nixtest.Closure(t, "subst-poison")
	all := paths(infos)
	tests := []struct {
		fault       fault
		compression string
		path        string // the faulty path
	}{
		{faultNotFound, "xz", "mid"},
		{faultTruncated, "xz", "blob-a"},
		{faultTruncated, "none", "blob-a"},
		{faultCorrupt, "none", "blob-a"},
		{faultCorrupt, "xz", "blob-a"},
		{faultTrailing, "none", "leaf"},
		{faultTrailing, "zstd", "leaf"},
		{faultOtherHost, "xz", "leaf"},
		{faultDotDot, "xz", "leaf"},
		{faultWrongHash, "xz", "single"},
		{faultWrongPath, "xz", "single"},
		{faultServer, "zstd", "blob-b"},
		{faultStall, "xz", "blob-b"},
		{faultTrickle, "none", "blob-b"},
		{faultSlowInfo, "xz", "mid"},
		{faultBigInfo, "xz", "top"},
		{faultHugeDict, "xz", "blob-a"},
	}
	caches := map[string]string{}
	for _, tt := range tests {
		if caches[tt.compression] == "" {
			caches[tt.compression] = binaryCache(t, tt.compression, all...)
		}
	}
	for _, tt := range tests {
		t.Run(string(tt.fault)+"-"+tt.compression, func(t *testing.T) {
			cache := startCache(t, caches[tt.compression])
			bad := pick(t, infos, tt.path)[0]
			cache.fail(bad.Path, tt.fault)
			root := t.TempDir()
			sink := &testutil.Recorder{}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			stats, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: agentBin, Root: root, Sink: sink, Substitute: fastSubstitute(cache.URL)})
			if err != nil {
				t.Fatal(err)
			}
			checkReceived(t, root, infos)
			checkNoPartial(t, root, false)
			if stats.Substituted != len(infos)-1 || stats.Sent != 1 {
				t.Errorf("substituted %d, sent %d; want %d and 1 (%s)", stats.Substituted, stats.Sent, len(infos)-1, bad.Path)
			}
			info := sink.Messages(event.Info)
			t.Logf("%s: %s", tt.fault, info)
			if warn := sink.Messages(event.Warn); len(warn) > 0 {
				t.Errorf("warnings %q: a cache's fault is a miss, not a failure", warn)
			}
		})
	}
}

// A cache that refuses connections is asked once and then no more; the
// next one in the list serves, and with none left everything is streamed.
func TestSendSkipsUnreachableCache(t *testing.T) {
	_, infos := nixtest.Closure(t, "subst-dead")
	dead := fmt.Sprintf("http://127.0.0.1:%d", sshtest.FreePort(t))
	cache := startCache(t, binaryCache(t, "xz", paths(infos)...))
	tests := []struct {
		name        string
		caches      []string
		substituted int
	}{
		{"dead then good", []string{dead, cache.URL}, len(infos)},
		{"dead only", []string{dead}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			sink := &testutil.Recorder{}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stats, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: agentBin, Root: root, Sink: sink, Substitute: fastSubstitute(tt.caches...)})
			if err != nil {
				t.Fatal(err)
			}
			checkReceived(t, root, infos)
			if stats.Substituted != tt.substituted || stats.Sent != len(infos)-tt.substituted {
				t.Errorf("substituted %d, sent %d; want %d and %d", stats.Substituted, stats.Sent, tt.substituted, len(infos)-tt.substituted)
			}
			if tt.substituted == 0 {
				// Nothing came from a cache: the output is the one without substitution.
				if info := sink.Messages(event.Info); len(info) > 0 {
					t.Errorf("info events %q, want none", info)
				}
				done := sink.Messages(event.Done)
				if len(done) == 0 || !strings.HasPrefix(done[len(done)-1], "copy closure: sent 7 paths (") {
					t.Errorf("done events %q, want the plain stream's", done)
				}
			}
		})
	}
}

// failingSubstituteRunner answers `agent substitute` as an agent without
// the verb would.
type failingSubstituteRunner struct {
	localRunner
	mu    sync.Mutex
	calls int
}

func (f *failingSubstituteRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if strings.Contains(cmd, " substitute ") {
		f.mu.Lock()
		f.calls++
		f.mu.Unlock()
		io.WriteString(stderr, "nixos-via agent: unknown verb \"substitute\"\n")
		return fmt.Errorf("sh -c %q: exit status 2", cmd)
	}
	return f.localRunner.Run(ctx, cmd, stdin, stdout, stderr)
}

func TestSendStreamsAllWhenSubstituteFails(t *testing.T) {
	_, infos := nixtest.Closure(t, "subst-old")
	cache := startCache(t, binaryCache(t, "xz", paths(infos)...))
	root := t.TempDir()
	sink := &testutil.Recorder{}
	r := &failingSubstituteRunner{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stats, err := Send(ctx, r, infos, SendOptions{Agent: agentBin, Root: root, Jobs: 2, Sink: sink, Substitute: fastSubstitute(cache.URL)})
	if err != nil {
		t.Fatal(err)
	}
	checkReceived(t, root, infos)
	if r.calls != 1 || stats.Sent != len(infos) || stats.Substituted != 0 {
		t.Errorf("%d substitute sessions, %+v; want 1 and every path sent", r.calls, stats)
	}
	warn := sink.Messages(event.Warn)
	if len(warn) != 1 || !strings.Contains(warn[0], "unknown verb") || !strings.Contains(warn[0], "the other 7 were streamed") {
		t.Errorf("warnings %q, want one naming the agent's failure and the streamed paths", warn)
	}
}

// Over a real sshd, with a slow cache: substitution and the stream run in
// the same Send; what the cache lacks is streamed while it still answers.
func TestSendSubstitutesOverSSH(t *testing.T) {
	sshtest.Need(t)
	_, infos := nixtest.Closure(t, "subst-ssh")
	cached := pick(t, infos, "mid", "blob-b")
	cache := startCache(t, binaryCache(t, "xz", paths(cached)...))
	cache.delay = 50 * time.Millisecond
	cache.fail(pick(t, infos, "leaf")[0].Path, faultTruncated)
	s := sshtest.Start(t, sshtest.Options{})
	p := sshtest.StartProxy(t, s.Addr)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stats SendStats
	wire := wireBytes(t, s, p, func(c *target.Conn) {
		var err error
		stats, err = Send(ctx, c, infos, SendOptions{Agent: agentBin, Root: root, Jobs: 2, Substitute: fastSubstitute(cache.URL)})
		if err != nil {
			t.Fatal(err)
		}
	})
	checkReceived(t, root, infos)
	checkNoPartial(t, root, false)
	// mid and blob-b from the cache; leaf (truncated there), the text
	// file, top, single and blob-a streamed.
	if stats.Substituted != 2 || stats.Sent != 5 {
		t.Errorf("substituted %d, sent %d; want 2 and 5", stats.Substituted, stats.Sent)
	}
	if cache.nars.Load() != 3 {
		t.Errorf("%d NAR requests, want 3 (mid, blob-b, leaf)", cache.nars.Load())
	}
	var streamed uint64
	for _, info := range infos {
		if !strings.Contains(info.Path, "-via-blob-b-") {
			streamed += info.NarSize
		}
	}
	t.Logf("%+v, %d bytes on the wire", stats, wire)
	if uint64(wire) > streamed+64<<10 {
		t.Errorf("%d bytes on the wire, want at most the streamed paths' %d and the protocol", wire, streamed)
	}
}

// Over https the agent checks the cache's certificate against the CA
// files it has (SSL_CERT_FILE here): trusted, the paths come from the
// cache; untrusted (no CA file, so the built-in roots), none do and all
// are streamed.
func TestSendSubstitutesOverHTTPS(t *testing.T) {
	_, infos := nixtest.Closure(t, "subst-tls")
	cache, ca := startTLSCache(t, binaryCache(t, "zstd", paths(infos)...))
	tests := []struct {
		name        string
		env         string
		substituted int
	}{
		{"trusted", "SSL_CERT_FILE=" + ca, len(infos)},
		{"no CA files", "SSL_CERT_FILE=/nonexistent SSL_CERT_DIR=/nonexistent", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stats, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: tt.env + " " + agentBin, Root: root, Substitute: fastSubstitute(cache.URL)})
			if err != nil {
				t.Fatal(err)
			}
			checkReceived(t, root, infos)
			if stats.Substituted != tt.substituted || stats.Sent != len(infos)-tt.substituted {
				t.Errorf("substituted %d, sent %d; want %d and %d", stats.Substituted, stats.Sent, tt.substituted, len(infos)-tt.substituted)
			}
		})
	}
}

// The stream does not wait for the caches: a path the cache lacks arrives
// by the stream and is committed (in place and recorded) while the cache
// still holds back another path's NAR.
func TestSendStreamsBesideSubstitution(t *testing.T) {
	_, infos := nixtest.Closure(t, "subst-beside")
	cache := startCache(t, binaryCache(t, "xz", paths(pick(t, infos, "blob-a"))...))
	opts := fastSubstitute(cache.URL)
	opts.StallTimeout = 30 * time.Second // the hold below is no stall
	top := pick(t, infos, "top")[0]
	blobA := pick(t, infos, "blob-a")[0]
	root := t.TempDir()
	sawTop := make(chan bool, 1)
	cache.beforeNar = func(hash string) {
		if hash != hashPart(blobA.Path) {
			return
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if committed(root, top) {
				sawTop <- true
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		sawTop <- false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stats, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: agentBin, Root: root, Jobs: 2, Substitute: opts})
	if err != nil {
		t.Fatal(err)
	}
	checkReceived(t, root, infos)
	if stats.Substituted != 1 || stats.Sent != len(infos)-1 {
		t.Errorf("substituted %d, sent %d; want 1 and %d", stats.Substituted, stats.Sent, len(infos)-1)
	}
	select {
	case ok := <-sawTop:
		if !ok {
			t.Error("top (not in the cache) was not streamed and committed within 20s while the cache held back blob-a's NAR")
		}
	default:
		t.Error("the cache was never asked for blob-a's NAR")
	}
}

// committed says whether info's path is valid under root: in place, with
// a record of its narHash (safe to call from any goroutine).
func committed(root string, info nix.PathInfo) bool {
	l, err := newLayout(root)
	if err != nil {
		return false
	}
	recs, err := l.records()
	return err == nil && l.valid(recs, info.Path, info.NarHash)
}

// With two caches that both have every path, the agent asks them as Nix
// does: by priority, lower first (the URL's ?priority= over the cache's
// nix-cache-info Priority), ties in the order given; a cache for another
// store directory is not asked.
func TestSendAsksCachesByPriority(t *testing.T) {
	_, infos := nixtest.Closure(t, "subst-prio")
	dir := binaryCache(t, "zstd", paths(infos)...)
	info := func(prio string) string {
		s := "StoreDir: /nix/store\nWantMassQuery: 1\n"
		if prio != "" {
			s += "Priority: " + prio + "\n"
		}
		return s
	}
	tests := []struct {
		name         string
		first, other string // nix-cache-info of the cache listed first, and of the other
		firstQuery   string // appended to the first cache's URL
		want         string // "first" or "other": the cache every path came from
	}{
		{"lower priority listed second", info("50"), info("30"), "", "other"},
		{"lower priority listed first", info("30"), info("50"), "", "first"},
		{"URL priority over the cache's", info("50"), info("30"), "?priority=10", "first"},
		{"URL priority makes it last", info("30"), info("50"), "?priority=60", "other"},
		{"no Priority is 0", info(""), info("40"), "", "first"},
		{"tie: as listed", info("40"), info("40"), "", "first"},
		{"another store directory", "StoreDir: /gnu/store\nPriority: 10\n", info("50"), "", "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, other := startCache(t, dir), startCache(t, dir)
			first.cacheInfo, other.cacheInfo = tt.first, tt.other
			root := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stats, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: agentBin, Root: root, Substitute: fastSubstitute(first.URL+tt.firstQuery, other.URL)})
			if err != nil {
				t.Fatal(err)
			}
			checkReceived(t, root, infos)
			want, unused := first, other
			if tt.want == "other" {
				want, unused = other, first
			}
			got := map[string]int64{"first": first.nars.Load(), "other": other.nars.Load()}
			if stats.Substituted != len(infos) || want.nars.Load() != int64(len(infos)) || unused.narinfos.Load()+unused.nars.Load() != 0 {
				t.Errorf("substituted %d; NAR requests %v, narinfo requests first %d, other %d; want all %d NARs from %s and nothing asked of the other",
					stats.Substituted, got, first.narinfos.Load(), other.narinfos.Load(), len(infos), tt.want)
			}
		})
	}
}
