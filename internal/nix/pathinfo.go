package nix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nixos-via/nixos-via/internal/nar"
)

// PathInfo is what nixos-via needs to know about one store path.
type PathInfo struct {
	Path       string   // absolute, in /nix/store
	NarHash    nar.Hash // sha256 of the path's NAR
	NarSize    uint64   // bytes in the path's NAR
	References []string // absolute store paths, sorted; may include Path itself
	Deriver    string   // absolute .drv path, or "" when unknown
}

// Validate checks that info is complete and every path in it is a store path.
func (info PathInfo) Validate() error {
	if err := CheckStorePath(info.Path); err != nil {
		return err
	}
	if info.NarHash.IsZero() {
		return fmt.Errorf("%s: no narHash", info.Path)
	}
	if info.NarSize == 0 {
		return fmt.Errorf("%s: narSize is 0", info.Path)
	}
	for _, r := range info.References {
		if err := CheckStorePath(r); err != nil {
			return fmt.Errorf("%s: reference: %w", info.Path, err)
		}
	}
	if info.Deriver != "" {
		if err := CheckStorePath(info.Deriver); err != nil {
			return fmt.Errorf("%s: deriver: %w", info.Path, err)
		}
	}
	return nil
}

// rawPathInfo covers every shape `nix path-info --json` has printed:
// Nix 2.8–2.18 (array of objects with "path", narHash "sha256:<base32>" or
// SRI), 2.19+ (object keyed by path, null for invalid paths), and the
// versioned form (store paths as base names, hashes as objects).
type rawPathInfo struct {
	Path       string          `json:"path"`
	Valid      *bool           `json:"valid"`
	NarHash    json.RawMessage `json:"narHash"`
	NarSize    *uint64         `json:"narSize"`
	References []string        `json:"references"`
	Deriver    *string         `json:"deriver"`
	StoreDir   string          `json:"storeDir"`
}

type rawHash struct {
	Algorithm string `json:"algorithm"`
	Format    string `json:"format"`
	Hash      string `json:"hash"`
}

// ParsePathInfoJSON parses the output of `nix path-info --json [--recursive]`
// in any of the shapes Nix versions print. An invalid (absent) path is an
// error. The result is sorted by path.
func ParsePathInfoJSON(data []byte) ([]PathInfo, error) {
	data = bytes.TrimSpace(data)
	var raws []rawPathInfo
	switch {
	case len(data) > 0 && data[0] == '[':
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, fmt.Errorf("parse path-info JSON: %w", err)
		}
	case len(data) > 0 && data[0] == '{':
		var byPath map[string]*rawPathInfo
		if err := json.Unmarshal(data, &byPath); err != nil {
			return nil, fmt.Errorf("parse path-info JSON: %w", err)
		}
		for p, r := range byPath {
			if r == nil {
				return nil, fmt.Errorf("parse path-info JSON: %s is not valid in the store", p)
			}
			if r.Path == "" {
				r.Path = p
			}
			raws = append(raws, *r)
		}
	default:
		return nil, errors.New("parse path-info JSON: want an array or an object")
	}
	infos := make([]PathInfo, 0, len(raws))
	for _, r := range raws {
		info, err := r.convert()
		if err != nil {
			return nil, fmt.Errorf("parse path-info JSON: %w", err)
		}
		infos = append(infos, info)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Path < infos[j].Path })
	for i := 1; i < len(infos); i++ {
		if infos[i].Path == infos[i-1].Path {
			return nil, fmt.Errorf("parse path-info JSON: %s listed twice", infos[i].Path)
		}
	}
	return infos, nil
}

func (r rawPathInfo) convert() (PathInfo, error) {
	storeDir := StoreDir
	if r.StoreDir != "" && r.StoreDir != StoreDir {
		return PathInfo{}, fmt.Errorf("%s: store directory %q, want %s", r.Path, r.StoreDir, StoreDir)
	}
	abs := func(p string) string {
		if strings.HasPrefix(p, "/") {
			return p
		}
		return storeDir + "/" + p
	}
	info := PathInfo{Path: abs(r.Path)}
	if r.Path == "" {
		return info, errors.New("entry without a path")
	}
	if r.Valid != nil && !*r.Valid {
		return info, fmt.Errorf("%s is not valid in the store", info.Path)
	}
	h, err := parseJSONHash(r.NarHash)
	if err != nil {
		return info, fmt.Errorf("%s: narHash: %w", info.Path, err)
	}
	info.NarHash = h
	if r.NarSize == nil {
		return info, fmt.Errorf("%s: no narSize", info.Path)
	}
	info.NarSize = *r.NarSize
	for _, ref := range r.References {
		info.References = append(info.References, abs(ref))
	}
	sort.Strings(info.References)
	if r.Deriver != nil && *r.Deriver != "" {
		info.Deriver = abs(*r.Deriver)
	}
	return info, info.Validate()
}

func parseJSONHash(raw json.RawMessage) (nar.Hash, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nar.Hash{}, errors.New("missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return nar.ParseHash(s)
	}
	var h rawHash
	if err := json.Unmarshal(raw, &h); err != nil {
		return nar.Hash{}, fmt.Errorf("want a string or a hash object: %w", err)
	}
	if h.Algorithm != "sha256" {
		return nar.Hash{}, fmt.Errorf("algorithm %q, want sha256", h.Algorithm)
	}
	switch h.Format {
	case "sri":
		return nar.ParseHash(h.Hash)
	case "base64":
		return nar.ParseHash("sha256-" + h.Hash)
	case "base16", "nix32", "base32", "":
		return nar.ParseHash("sha256:" + h.Hash)
	}
	return nar.Hash{}, fmt.Errorf("unknown hash format %q", h.Format)
}
