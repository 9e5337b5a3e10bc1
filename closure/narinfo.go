package closure

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// maxNarinfoSize bounds a cache's answer for one narinfo: real ones are a
// few hundred bytes (a path with thousands of references a few dozen KiB).
const maxNarinfoSize = 64 << 10

// narinfo is what the substituter reads of a binary cache's
// <hash>.narinfo. Every field is untrusted: parseNarinfo checks it against
// the path-info the sender trusts before anything is fetched.
type narinfo struct {
	StorePath   string
	URL         string // relative to the cache, checked by narURL
	Compression string // "xz", "zstd", "bzip2", "gzip" or "none"
	NarHash     nar.Hash
	NarSize     uint64
	// References and Deriver are absolute store paths (the narinfo names
	// them by base name); only a closure walk (BinaryCache) uses them.
	References []string
	Deriver    string
}

// decompressors are the narinfo Compression values the agent can unpack.
var decompressors = map[string]bool{"xz": true, "zstd": true, "bzip2": true, "gzip": true, "none": true}

// parseNarinfo parses data as the narinfo for want and refuses it unless
// its StorePath, NarHash and NarSize are want's, its URL is a clean path
// inside the cache, and its compression is one the agent unpacks.
func parseNarinfo(data []byte, want nix.PathInfo) (narinfo, error) {
	ni, err := readNarinfo(data)
	if err != nil {
		return ni, err
	}
	switch {
	case ni.StorePath != want.Path:
		return ni, fmt.Errorf("narinfo is for %q, want %s", truncate(ni.StorePath), want.Path)
	case ni.NarHash != want.NarHash:
		return ni, fmt.Errorf("narinfo NarHash %s, our path-info says %s", ni.NarHash, want.NarHash)
	case ni.NarSize != want.NarSize:
		return ni, fmt.Errorf("narinfo NarSize %d, our path-info says %d", ni.NarSize, want.NarSize)
	}
	return ni, nil
}

// readNarinfo parses data as a narinfo on its own: bounded, every field
// Nix needs present once, its store paths valid, its URL a clean path
// inside the cache and its compression one the agent unpacks.
func readNarinfo(data []byte) (narinfo, error) {
	var ni narinfo
	if len(data) > maxNarinfoSize {
		return ni, fmt.Errorf("narinfo is more than %d bytes", maxNarinfoSize)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxNarinfoSize)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			// "References: " with no references is "References:" once trimmed by some caches.
			k, v, ok = strings.Cut(line, ":")
			if !ok {
				return ni, fmt.Errorf("narinfo line %q: want \"Key: value\"", truncate(line))
			}
		}
		switch k {
		case "StorePath", "URL", "Compression", "NarHash", "NarSize", "References", "Deriver":
			if seen[k] {
				return ni, fmt.Errorf("narinfo has %s twice", k)
			}
			seen[k] = true
		}
		switch k {
		case "StorePath":
			ni.StorePath = v
		case "URL":
			ni.URL = v
		case "Compression":
			ni.Compression = v
		case "NarHash":
			h, err := nar.ParseHash(v)
			if err != nil {
				return ni, fmt.Errorf("narinfo NarHash: %w", err)
			}
			ni.NarHash = h
		case "NarSize":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return ni, fmt.Errorf("narinfo NarSize %q: %w", truncate(v), err)
			}
			ni.NarSize = n
		case "References":
			for _, base := range strings.Fields(v) {
				if err := nix.CheckStorePathBase(base); err != nil {
					return ni, fmt.Errorf("narinfo References: %w", err)
				}
				ni.References = append(ni.References, nix.StoreDir+"/"+base)
			}
		case "Deriver":
			if v != "" && v != "unknown-deriver" {
				if err := nix.CheckStorePathBase(v); err != nil {
					return ni, fmt.Errorf("narinfo Deriver: %w", err)
				}
				ni.Deriver = nix.StoreDir + "/" + v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return ni, fmt.Errorf("narinfo: %w", err)
	}
	for _, k := range []string{"StorePath", "URL", "NarHash", "NarSize"} {
		if !seen[k] {
			return ni, fmt.Errorf("narinfo has no %s", k)
		}
	}
	if ni.Compression == "" {
		ni.Compression = "bzip2" // Nix's default for a narinfo without the field
	}
	if err := nix.CheckStorePath(ni.StorePath); err != nil {
		return ni, fmt.Errorf("narinfo StorePath: %w", err)
	}
	if !decompressors[ni.Compression] {
		return ni, fmt.Errorf("narinfo Compression %q: not one of xz, zstd, bzip2, gzip, none", truncate(ni.Compression))
	}
	if _, err := narURL("http://cache.invalid", ni.URL); err != nil {
		return ni, err
	}
	return ni, nil
}

// narURL resolves a narinfo's URL field against the cache's base URL. The
// field must be a plain relative path below the cache (Nix writes
// "nar/<hash>.nar.xz"): no scheme, host, query, absolute path, "..", or
// characters outside [A-Za-z0-9._+-/], so a cache cannot send the agent to
// another host or out of its own tree.
func narURL(cache, rel string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("narinfo URL %q: %s", truncate(rel), why)
	}
	if rel == "" || len(rel) > 1024 {
		return bad("empty or longer than 1024 bytes")
	}
	for i := 0; i < len(rel); i++ {
		c := rel[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._+-/", c) >= 0) {
			return bad(fmt.Sprintf("character %q: want a relative path of [A-Za-z0-9._+-/]", c))
		}
	}
	if strings.HasPrefix(rel, "/") {
		return bad("absolute path: want one relative to the cache")
	}
	for _, seg := range strings.Split(rel, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("empty, \".\" or \"..\" segment")
		}
	}
	if path.Clean(rel) != rel {
		return bad("not a clean path")
	}
	base, err := cacheBase(cache)
	if err != nil {
		return "", err
	}
	return base + "/" + rel, nil
}

// cacheBase is a cache URL without its query (Nix store parameters such as
// ?priority=40) and trailing slashes; only http and https caches qualify.
func cacheBase(cache string) (string, error) {
	u, err := url.Parse(cache)
	if err != nil {
		return "", fmt.Errorf("cache URL %q: %w", truncate(cache), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("cache URL %q: want http(s)://host[/path] (the agent fetches over HTTP only)", truncate(cache))
	}
	u.RawQuery = ""
	return strings.TrimRight(u.String(), "/"), nil
}

// HTTPCaches splits substituter URLs into those the agent can fetch from
// (http and https binary caches) and the others (file://, s3://, ssh://,
// daemon, ...), which only the local Nix could use.
func HTTPCaches(urls []string) (usable, others []string) {
	for _, u := range urls {
		if u == "" {
			continue
		}
		if _, err := cacheBase(u); err == nil {
			usable = append(usable, u)
		} else {
			others = append(others, u)
		}
	}
	return usable, others
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
