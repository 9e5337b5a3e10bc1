package closure

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// NARSource gives the NARs of a closure's paths when they are not in the
// local store (--from). Send checks what it writes against the path-info
// as it does a local NAR, and the agent checks it again.
type NARSource interface {
	// NAR writes info.Path's NAR to w and returns what was written.
	NAR(ctx context.Context, info nix.PathInfo, w io.Writer) (nar.Result, error)
}

// Bounds on what a binary cache given with --from may make us do.
const (
	maxFromPaths   = 100_000 // paths in one closure
	fromWalkJobs   = 16      // narinfo requests in flight
	fromStallAfter = 30 * time.Second
)

// BinaryCache is a Nix binary cache read as the source of a closure
// (--from file:///DIR or http(s)://HOST/PATH): its narinfo files give the
// closure's path-info and its NARs the contents; nothing goes through the
// local store. Everything it serves is untrusted input, checked as the
// agent checks a substituter's answers (readNarinfo); the NarHash of its
// narinfo is what the NAR is then checked against, so the cache is the
// trust root of what is installed (its signatures are not checked).
type BinaryCache struct {
	store  string // as given
	base   string // http(s) URL without query or trailing slash; "" for a directory
	dir    string // the directory of a file:// cache
	client *http.Client
	stall  time.Duration

	mu    sync.Mutex
	narOf map[string]narinfo // by store path, from Closure
}

// OpenBinaryCache checks store's URL (file:// with an absolute path,
// http:// or https://) without contacting it.
func OpenBinaryCache(store string) (*BinaryCache, error) {
	c := &BinaryCache{store: store, narOf: map[string]narinfo{}, stall: fromStallAfter}
	u, err := url.Parse(store)
	if err != nil {
		return nil, fmt.Errorf("--from %q: %w", truncate(store), err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" || !filepath.IsAbs(u.Path) || u.Path != filepath.Clean(u.Path) {
			return nil, fmt.Errorf("--from %q: want file:///ABSOLUTE/DIR", truncate(store))
		}
		c.dir = u.Path
	case "http", "https":
		base, err := cacheBase(store)
		if err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
		c.base = base
		c.client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: DefaultConnectTimeout}).DialContext,
			TLSHandshakeTimeout:   DefaultConnectTimeout,
			ResponseHeaderTimeout: fromStallAfter,
			MaxIdleConnsPerHost:   fromWalkJobs,
		}}
	default:
		return nil, fmt.Errorf("--from %q: not a binary cache (want file://, http:// or https://)", truncate(store))
	}
	return c, nil
}

// IsBinaryCache says whether store is a URL OpenBinaryCache takes.
func IsBinaryCache(store string) bool {
	return strings.HasPrefix(store, "file://") || strings.HasPrefix(store, "http://") || strings.HasPrefix(store, "https://")
}

// HTTP says whether the cache is served over http(s), so that the target
// can substitute from it itself.
func (c *BinaryCache) HTTP() bool { return c.base != "" }

// Closure walks the closure of top through the cache's narinfo References
// and returns its path-info, sorted by path; a path the cache lacks, or a
// narinfo that fails its checks, is an error naming the path.
func (c *BinaryCache) Closure(ctx context.Context, top string) ([]nix.PathInfo, error) {
	if err := nix.CheckStorePath(top); err != nil {
		return nil, fmt.Errorf("closure of %s in %s: %w", top, c.store, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		path string
		ni   narinfo
		err  error
	}
	todo := make(chan string, maxFromPaths)
	results := make(chan result)
	var wg sync.WaitGroup
	for i := 0; i < fromWalkJobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range todo {
				ni, err := c.narinfo(ctx, p)
				select {
				case results <- result{p, ni, err}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	defer func() { cancel(); close(todo); wg.Wait() }()
	seen := map[string]bool{top: true}
	todo <- top
	pending := 1
	var infos []nix.PathInfo
	for pending > 0 {
		var res result
		select {
		case res = <-results:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		pending--
		if res.err != nil {
			return nil, fmt.Errorf("closure of %s in %s: %w", top, c.store, res.err)
		}
		info := nix.PathInfo{Path: res.path, NarHash: res.ni.NarHash, NarSize: res.ni.NarSize, References: res.ni.References, Deriver: res.ni.Deriver}
		sort.Strings(info.References)
		if err := info.Validate(); err != nil {
			return nil, fmt.Errorf("closure of %s in %s: %w", top, c.store, err)
		}
		infos = append(infos, info)
		c.mu.Lock()
		c.narOf[res.path] = res.ni
		c.mu.Unlock()
		for _, ref := range res.ni.References {
			if seen[ref] {
				continue
			}
			if len(seen) >= maxFromPaths {
				return nil, fmt.Errorf("closure of %s in %s: more than %d paths", top, c.store, maxFromPaths)
			}
			seen[ref] = true
			pending++
			todo <- ref
		}
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Path < infos[j].Path })
	return infos, nil
}

// narinfo fetches and checks p's narinfo.
func (c *BinaryCache) narinfo(ctx context.Context, p string) (narinfo, error) {
	hash := strings.TrimPrefix(p, nix.StoreDir+"/")[:32]
	body, err := c.open(ctx, hash+".narinfo")
	if err != nil {
		return narinfo{}, fmt.Errorf("%s: %w", p, err)
	}
	defer body.Close()
	data, err := io.ReadAll(&capReader{r: body, left: maxNarinfoSize})
	if err != nil {
		return narinfo{}, fmt.Errorf("%s: read its narinfo: %w", p, err)
	}
	ni, err := readNarinfo(data)
	if err != nil {
		return ni, fmt.Errorf("%s: %w", p, err)
	}
	if ni.StorePath != p {
		return ni, fmt.Errorf("%s: narinfo is for %s", p, ni.StorePath)
	}
	return ni, nil
}

// errMissing is a file the cache does not have.
var errMissing = errors.New("not in the cache")

// open opens rel (a checked relative path) in the cache; a stalled HTTP
// body fails its reads after the stall timeout.
func (c *BinaryCache) open(ctx context.Context, rel string) (io.ReadCloser, error) {
	if c.dir != "" {
		if _, err := narURL("http://cache.invalid", rel); err != nil {
			return nil, err
		}
		f, err := os.Open(filepath.Join(c.dir, filepath.FromSlash(rel)))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s/%s: %w", c.store, rel, errMissing)
		}
		return f, err
	}
	u, err := narURL(c.base, rel)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("User-Agent", "nixos-via")
	resp, err := c.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden {
			return nil, fmt.Errorf("GET %s: %s: %w", u, resp.Status, errMissing)
		}
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	p := &progressReader{r: resp.Body, timeout: c.stall, cancel: cancel}
	p.timer = time.AfterFunc(p.timeout, p.look)
	return &watchedBody{progressReader: p, body: resp.Body, cancel: cancel}, nil
}

type watchedBody struct {
	*progressReader
	body   io.Closer
	cancel context.CancelFunc
}

func (w *watchedBody) Close() error {
	w.stop()
	w.cancel()
	return w.body.Close()
}

// NAR fetches info.Path's NAR as the cache's narinfo names it (read by
// Closure, else now), unpacks it, writes it to w and checks it: a NAR
// (well-formed, nothing after it) of the path-info's size and hash.
func (c *BinaryCache) NAR(ctx context.Context, info nix.PathInfo, w io.Writer) (nar.Result, error) {
	c.mu.Lock()
	ni, ok := c.narOf[info.Path]
	c.mu.Unlock()
	if !ok {
		var err error
		if ni, err = c.narinfo(ctx, info.Path); err != nil {
			return nar.Result{}, err
		}
	}
	if ni.NarHash != info.NarHash || ni.NarSize != info.NarSize {
		return nar.Result{}, fmt.Errorf("%s: the cache's narinfo says %s (%d bytes), the path-info %s (%d bytes)", info.Path, ni.NarHash, ni.NarSize, info.NarHash, info.NarSize)
	}
	body, err := c.open(ctx, ni.URL)
	if err != nil {
		return nar.Result{}, fmt.Errorf("%s: %w", info.Path, err)
	}
	defer body.Close()
	size := info.NarSize
	compressed := &capReader{r: body, left: int64(size + narSlack(size))}
	if ni.Compression == "none" {
		compressed.left = int64(size) + 1
	}
	dec, err := decompress(ni.Compression, bufio.NewReaderSize(compressed, 64<<10), size)
	if err != nil {
		return nar.Result{}, fmt.Errorf("%s: %s %s: %w", info.Path, ni.Compression, ni.URL, err)
	}
	defer dec.Close()
	lr := &io.LimitedReader{R: dec, N: int64(size)}
	res, err := nar.Verify(io.TeeReader(bufio.NewReaderSize(lr, 64<<10), w))
	if err != nil {
		return res, fmt.Errorf("%s: NAR %s: %w", info.Path, ni.URL, err)
	}
	if n, err := io.Copy(io.Discard, io.LimitReader(dec, 1)); n != 0 || err != nil {
		if err == nil {
			err = errors.New("data after the NAR")
		}
		return res, fmt.Errorf("%s: NAR %s: %w", info.Path, ni.URL, err)
	}
	return res, nil
}
