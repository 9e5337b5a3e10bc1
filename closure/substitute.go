package closure

import (
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	// A static agent on a rescue system without CA files still checks
	// https caches: these roots are used only when the system has none.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// Defaults of a substitute request's options.
const (
	DefaultSubstituteLookups = 32
	DefaultSubstituteJobs    = 8
	DefaultConnectTimeout    = 5 * time.Second // nixos-images' installer sets connect-timeout = 5
	DefaultStallTimeout      = 30 * time.Second
)

// narSlack is how many bytes more than its NAR a compressed NAR may be:
// incompressible data grows a little in every format.
func narSlack(narSize uint64) uint64 { return narSize/32 + 64<<10 }

// ServeSubstitute is the agent side of `agent substitute`: it reads a
// substitute request (the cache URLs and the wanted paths with the
// sender's path-info) from stdin, reads each cache's nix-cache-info (its
// StoreDir and Priority), fetches each path's narinfo and NAR from the
// first cache by priority that has it, checks the NAR against the sender's narHash
// and narSize, restores and commits it into root exactly as Receive does,
// and answers on stdout "got" for each path once it is in place and
// recorded and "miss" for each it gave up, leaving nothing of it behind.
// Run it only after the query (which removes stale temporaries) and never
// for a path a receiver is sent.
func ServeSubstitute(ctx context.Context, stdin io.Reader, stdout io.Writer, root string) error {
	l, err := newLayout(root)
	if err != nil {
		return err
	}
	req, err := readSubstituteRequest(bufio.NewReaderSize(stdin, maxSubstituteLine))
	if err != nil {
		return err
	}
	if err := l.mkdirs(); err != nil {
		return fmt.Errorf("substitute: %w", err)
	}
	req.defaults()
	out := &answerWriter{w: bufio.NewWriter(stdout)}
	if err := out.line(substitutedMagic); err != nil {
		return fmt.Errorf("substitute: write answer: %w", err)
	}
	s := newSubstituter(req, l, out)
	s.run(ctx)
	if err := s.rc.failed(); err != nil {
		return fmt.Errorf("substitute: %w", err)
	}
	if err := out.err(); err != nil {
		return fmt.Errorf("substitute: write answer: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("substitute: %w", err)
	}
	got, miss := out.counts()
	if err := out.line(fmt.Sprintf("end %d %d", got, miss)); err != nil {
		return fmt.Errorf("substitute: write answer: %w", err)
	}
	return nil
}

func (req *substituteRequest) defaults() {
	if req.Lookups == 0 {
		req.Lookups = DefaultSubstituteLookups
	}
	if req.Jobs == 0 {
		req.Jobs = DefaultSubstituteJobs
	}
	if req.ConnectTimeout == 0 {
		req.ConnectTimeout = DefaultConnectTimeout
	}
	if req.StallTimeout == 0 {
		req.StallTimeout = DefaultStallTimeout
	}
}

// maxReason bounds a miss's reason on the wire (one line of the answer).
const maxReason = 2048

// answerWriter writes the answer's lines, one whole line at a time, from
// any goroutine, flushing each so the sender can act on it at once.
type answerWriter struct {
	mu        sync.Mutex
	w         *bufio.Writer
	got, miss int
	werr      error
}

func (a *answerWriter) line(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.werr == nil {
		a.w.WriteString(s + "\n")
		a.werr = a.w.Flush()
	}
	return a.werr
}

func (a *answerWriter) report(ans substituteAnswer) {
	a.mu.Lock()
	if ans.got {
		a.got++
	} else {
		a.miss++
	}
	a.mu.Unlock()
	if ans.got {
		a.line("got " + ans.path)
	} else {
		reason := strings.ReplaceAll(ans.reason, "\n", " ")
		if len(reason) > maxReason {
			reason = reason[:maxReason] + "…"
		}
		a.line("miss " + ans.path + " " + reason)
	}
}

func (a *answerWriter) counts() (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got, a.miss
}

func (a *answerWriter) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.werr
}

// substituter fetches the request's paths: lookup workers find each path's
// narinfo (a path no cache has is reported missing at once), download
// workers fetch, unpack and restore the NARs, and a collector batches the
// verified paths for the receiver's committer.
type substituter struct {
	req    substituteRequest
	out    *answerWriter
	client *http.Client
	rc     *receiver
	dead   []atomic.Bool // per cache: a connection failed, ask it no more
	// order is the caches to ask, by priority (rank); refused says why
	// each of the others is left out.
	order   []int
	refused []error
}

// found is a path whose narinfo a cache has, with where its NAR is.
type found struct {
	info  nix.PathInfo
	ni    narinfo
	url   string
	cache int
}

func newSubstituter(req substituteRequest, l layout, out *answerWriter) *substituter {
	dialer := &net.Dialer{Timeout: req.ConnectTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   req.ConnectTimeout + 5*time.Second,
		ResponseHeaderTimeout: req.StallTimeout,
		MaxIdleConnsPerHost:   req.Lookups + req.Jobs,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // NARs are compressed already; the bytes must be the cache's
	}
	s := &substituter{
		req:     req,
		out:     out,
		client:  &http.Client{Transport: transport},
		dead:    make([]atomic.Bool, len(req.Caches)),
		refused: make([]error, len(req.Caches)),
	}
	s.rc = &receiver{
		l:         l,
		opts:      ReceiveOptions{BatchBytes: 16 << 20, BatchPaths: 1024, BatchAge: 250 * time.Millisecond},
		batches:   make(chan []pendingPath, 1),
		committed: make(chan struct{}),
		onCommit: func(batch []pendingPath) {
			for _, p := range batch {
				out.report(substituteAnswer{got: true, path: p.info.Path})
			}
		},
	}
	return s
}

func (s *substituter) run(ctx context.Context) {
	defer s.client.CloseIdleConnections()
	s.rank(ctx)
	go s.rc.committer()
	lookups := make(chan nix.PathInfo)
	downloads := make(chan found, s.req.Jobs)
	verified := make(chan pendingPath, s.req.Jobs)
	go func() {
		defer close(lookups)
		for _, p := range s.req.Paths {
			select {
			case lookups <- p:
			case <-ctx.Done():
				s.out.report(substituteAnswer{path: p.Path, reason: ctx.Err().Error()})
			}
		}
	}()
	var lw, dw sync.WaitGroup
	for range s.req.Lookups {
		lw.Add(1)
		go func() {
			defer lw.Done()
			for p := range lookups {
				f, err := s.lookup(ctx, p)
				if err != nil {
					s.out.report(substituteAnswer{path: p.Path, reason: err.Error()})
					continue
				}
				downloads <- f
			}
		}()
	}
	go func() { lw.Wait(); close(downloads) }()
	buf := make(chan []byte, s.req.Jobs)
	for range s.req.Jobs {
		buf <- make([]byte, 128<<10)
		dw.Add(1)
		go func() {
			defer dw.Done()
			for f := range downloads {
				b := <-buf
				tmp, err := s.download(ctx, f, b)
				buf <- b
				if err != nil {
					s.out.report(substituteAnswer{path: f.info.Path, reason: err.Error()})
					continue
				}
				verified <- pendingPath{info: f.info, tmp: tmp}
			}
		}()
	}
	go func() { dw.Wait(); close(verified) }()
	stopAging := s.rc.ageBatches()
	s.collect(verified)
	stopAging()
	s.rc.flush()
	close(s.rc.batches)
	<-s.rc.committed
}

// collect hands verified paths to the receiver's batches, which commit by
// size, count and age as with streamed ones. After a commit failure the
// paths still coming are removed and reported missing.
func (s *substituter) collect(verified <-chan pendingPath) {
	for p := range verified {
		if err := s.rc.failed(); err != nil {
			nar.RemoveAll(p.tmp)
			s.out.report(substituteAnswer{path: p.info.Path, reason: "not committed: " + err.Error()})
			continue
		}
		s.rc.add(p)
	}
}

// lookup asks the caches in priority order for p's narinfo and returns
// the first that is for p, with our narHash and narSize, and a NAR the
// agent can fetch and unpack.
func (s *substituter) lookup(ctx context.Context, p nix.PathInfo) (found, error) {
	hashPart := strings.TrimPrefix(p.Path, nix.StoreDir+"/")[:32]
	var why []string
	for _, err := range s.refused {
		if err != nil {
			why = append(why, err.Error())
		}
	}
	for _, i := range s.order {
		cache := s.req.Caches[i]
		if s.dead[i].Load() {
			continue
		}
		base, err := cacheBase(cache)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		data, status, err := s.get(ctx, base+"/"+hashPart+".narinfo", maxNarinfoSize)
		if err != nil {
			if ctx.Err() != nil {
				return found{}, ctx.Err()
			}
			if status == 0 { // no answer at all: stop asking this cache
				s.dead[i].Store(true)
			}
			why = append(why, err.Error())
			continue
		}
		ni, err := parseNarinfo(data, p)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", base, err))
			continue
		}
		u, err := narURL(cache, ni.URL)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", base, err))
			continue
		}
		return found{info: p, ni: ni, url: u, cache: i}, nil
	}
	if len(why) == 0 {
		return found{}, errors.New("no cache left to ask (every one failed to answer)")
	}
	return found{}, errors.New(strings.Join(why, "; "))
}

// get fetches u, refusing a body of more than limit bytes. status is the
// HTTP status, 0 when no response came.
func (s *substituter) get(ctx context.Context, u string, limit int64) ([]byte, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := s.open(ctx, u)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body := s.watch(resp.Body, cancel)
	defer body.stop()
	data, err := io.ReadAll(&capReader{r: body, left: limit})
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: %w", u, err)
	}
	return data, resp.StatusCode, nil
}

func (s *substituter) open(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("User-Agent", "nixos-via-agent")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err // *url.Error says "Get <url>: ..."
	}
	return resp, nil
}

// watch ends a response whose body brings less than minProgress in a
// stall timeout before its end (cancel aborts its request); the caller
// stops the watch when it is done with the body.
func (s *substituter) watch(body io.Reader, cancel context.CancelFunc) *progressReader {
	p := &progressReader{r: body, timeout: s.req.StallTimeout, cancel: cancel}
	p.timer = time.AfterFunc(p.timeout, p.look)
	return p
}

// download fetches f's NAR, unpacks it and restores it under a temporary
// name, checking its size and narHash against the sender's path-info; on
// any failure nothing is left and the error says why.
func (s *substituter) download(ctx context.Context, f found, buf []byte) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := s.open(ctx, f.url)
	if err != nil {
		if ctx.Err() == nil {
			s.dead[f.cache].Store(true)
		}
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", f.url, resp.Status)
	}
	size := f.info.NarSize
	body := s.watch(resp.Body, cancel)
	defer body.stop()
	compressed := &capReader{r: body, left: int64(size + narSlack(size))}
	if f.ni.Compression == "none" {
		compressed.left = int64(size) + 1 // a byte more shows up as trailing data
	}
	dec, err := decompress(f.ni.Compression, bufio.NewReaderSize(compressed, 64<<10), size)
	if err != nil {
		return "", fmt.Errorf("GET %s: %s: %w", f.url, f.ni.Compression, err)
	}
	defer dec.Close()
	tmp, err := s.rc.l.temp(f.info.Path)
	if err != nil {
		return "", fmt.Errorf("substitute %s: %w", f.info.Path, err)
	}
	lr := &io.LimitedReader{R: dec, N: int64(size)}
	res, err := nar.Restore(bufio.NewReaderSize(lr, 64<<10), tmp, nar.RestoreOptions{Canonical: true, Fsync: perFileSync, Buf: buf})
	if err != nil {
		return "", fmt.Errorf("GET %s: restore: %w", f.url, err)
	}
	fail := func(err error) (string, error) { return "", errors.Join(err, nar.RemoveAll(tmp)) }
	if res.Size != size || lr.N != 0 {
		return fail(fmt.Errorf("GET %s: NAR is %d bytes, our path-info says %d", f.url, res.Size, size))
	}
	// Nothing may follow the NAR; reading to the end also makes xz and
	// zstd check their own checksums.
	if n, err := io.Copy(io.Discard, io.LimitReader(dec, 1)); n != 0 || err != nil {
		if err == nil {
			err = errors.New("data after the NAR")
		}
		return fail(fmt.Errorf("GET %s: after the NAR: %w", f.url, err))
	}
	if res.Hash != f.info.NarHash {
		return fail(fmt.Errorf("GET %s: NAR hash %s, our path-info says %s", f.url, res.Hash, f.info.NarHash))
	}
	return tmp, nil
}

// decompress unpacks a NAR of size bytes compressed as a narinfo's
// Compression says.
func decompress(method string, r io.Reader, size uint64) (io.ReadCloser, error) {
	switch method {
	case "none":
		return io.NopCloser(r), nil
	case "xz":
		return newXZDecoder(r, size)
	case "zstd":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case "bzip2":
		return io.NopCloser(bzip2.NewReader(r)), nil
	case "gzip":
		return gzip.NewReader(r)
	}
	return nil, fmt.Errorf("unknown compression %q", method)
}

// errTooBig is a body longer than the caller expects.
var errTooBig = errors.New("response is longer than expected")

// capReader reads r but fails with errTooBig once more than left bytes
// come, instead of silently cutting them as io.LimitReader does.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, fmt.Errorf("%w (more than the bound)", errTooBig)
	}
	return n, err
}

// minProgress is what a cache's response must bring in every stall
// timeout, unless it ends sooner: a cache that trickles a few bytes at a
// time is given up as one that sends nothing (a narinfo, at most 64 KiB,
// must so arrive whole within one).
const minProgress = 64 << 10

// progressReader counts what r brings; every timeout, fewer than
// minProgress bytes since the last look (and r not at its end) cancel the
// request, and reads then fail saying it stalled.
type progressReader struct {
	r       io.Reader
	timeout time.Duration
	cancel  context.CancelFunc
	timer   *time.Timer
	n       atomic.Int64 // bytes since the last look
	ended   atomic.Bool  // r returned an error or EOF
	stalled atomic.Bool
}

func (p *progressReader) look() {
	if p.ended.Load() {
		return
	}
	if p.n.Swap(0) < minProgress {
		p.stalled.Store(true)
		p.cancel()
		return
	}
	p.timer.Reset(p.timeout)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	if err != nil {
		p.ended.Store(true)
		p.timer.Stop()
		if err != io.EOF && p.stalled.Load() {
			err = fmt.Errorf("stalled: less than %s in %s: %w", event.Bytes(minProgress), p.timeout, context.DeadlineExceeded)
		}
	}
	return n, err
}

// stop ends the watch.
func (p *progressReader) stop() {
	p.ended.Store(true)
	p.timer.Stop()
}
