package closure

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// maxCacheInfoSize bounds a cache's nix-cache-info (a few lines).
const maxCacheInfoSize = 4 << 10

// cacheInfo is what the agent reads of a cache's nix-cache-info.
type cacheInfo struct {
	storeDir    string
	priority    int
	hasPriority bool
}

// parseCacheInfo reads nix-cache-info as Nix does: "Key: value" lines,
// unknown keys and lines without a colon ignored.
func parseCacheInfo(data []byte) (cacheInfo, error) {
	var ci cacheInfo
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "StoreDir":
			ci.storeDir = v
		case "Priority":
			n, err := strconv.Atoi(v)
			if err != nil {
				return ci, fmt.Errorf("nix-cache-info Priority %q: %w", truncate(v), err)
			}
			ci.priority, ci.hasPriority = n, true
		}
	}
	return ci, sc.Err()
}

// urlPriority is a substituter URL's ?priority=N, which overrides the
// cache's own, as in Nix.
func urlPriority(cache string) (int, bool, error) {
	u, err := url.Parse(cache)
	if err != nil {
		return 0, false, err
	}
	v := u.Query().Get("priority")
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, false, fmt.Errorf("cache URL %q: priority %q: %w", truncate(cache), truncate(v), err)
	}
	return n, true, nil
}

// rank reads every cache's nix-cache-info (all at once) and orders the
// caches as Nix orders substituters: by priority, lower first, the URL's
// ?priority= over the cache's Priority, 0 without either, ties in the
// order given. A cache whose nix-cache-info is missing (Nix: "does not
// appear to be a binary cache"), is for another store directory, or does
// not answer is left out, with the reason in s.refused.
func (s *substituter) rank(ctx context.Context) {
	prio := make([]int, len(s.req.Caches))
	var wg sync.WaitGroup
	for i, cache := range s.req.Caches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.cachePriority(ctx, i, cache)
			prio[i], s.refused[i] = p, err
		}()
	}
	wg.Wait()
	s.order = s.order[:0]
	for i := range s.req.Caches {
		if s.refused[i] == nil {
			s.order = append(s.order, i)
		}
	}
	sort.SliceStable(s.order, func(a, b int) bool { return prio[s.order[a]] < prio[s.order[b]] })
}

func (s *substituter) cachePriority(ctx context.Context, i int, cache string) (int, error) {
	base, err := cacheBase(cache)
	if err != nil {
		return 0, err
	}
	override, hasOverride, err := urlPriority(cache)
	if err != nil {
		return 0, err
	}
	data, status, err := s.get(ctx, base+"/nix-cache-info", maxCacheInfoSize)
	if err != nil {
		if status == 0 {
			s.dead[i].Store(true)
		}
		return 0, fmt.Errorf("%s does not appear to be a binary cache: %w", base, err)
	}
	ci, err := parseCacheInfo(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", base, err)
	}
	if ci.storeDir != "" && ci.storeDir != nix.StoreDir {
		return 0, fmt.Errorf("%s is a binary cache for the store %q, not %s", base, truncate(ci.storeDir), nix.StoreDir)
	}
	switch {
	case hasOverride:
		return override, nil
	case ci.hasPriority:
		return ci.priority, nil
	}
	return 0, nil
}
