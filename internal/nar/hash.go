package nar

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Hash is the sha256 of a NAR serialisation (a store path's narHash).
type Hash [sha256.Size]byte

// String renders h as Nix 2.8 prints narHashes: "sha256:<nix base32>".
func (h Hash) String() string { return "sha256:" + EncodeBase32(h[:]) }

// SRI renders h in the SRI form newer Nix prints: "sha256-<base64>".
func (h Hash) SRI() string { return "sha256-" + base64.StdEncoding.EncodeToString(h[:]) }

// Base16 renders h as lowercase hex without a prefix (the form in
// `nix-store --dump-db` registrations).
func (h Hash) Base16() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero value.
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses a sha256 hash in any form Nix prints or accepts:
// "sha256:<nix base32|base16|base64>", SRI "sha256-<base64>", or a bare
// nix base32 (52 chars) or base16 (64 chars) digest.
func ParseHash(s string) (Hash, error) {
	var h Hash
	digest := s
	sri := false
	switch {
	case strings.HasPrefix(s, "sha256:"):
		digest = s[len("sha256:"):]
	case strings.HasPrefix(s, "sha256-"):
		digest, sri = s[len("sha256-"):], true
	case strings.Contains(s, ":") || strings.Contains(s, "-"):
		return h, fmt.Errorf("parse hash %q: not a sha256 hash", s)
	}
	var raw []byte
	var err error
	switch {
	case sri:
		raw, err = base64.StdEncoding.DecodeString(digest)
	case len(digest) == Base32Len(sha256.Size):
		raw, err = DecodeBase32(digest)
	case len(digest) == hex.EncodedLen(sha256.Size):
		raw, err = hex.DecodeString(digest)
	case len(digest) == base64.StdEncoding.EncodedLen(sha256.Size):
		raw, err = base64.StdEncoding.DecodeString(digest)
	default:
		return h, fmt.Errorf("parse hash %q: digest has length %d, want 52 (base32), 64 (base16) or 44 (base64)", s, len(digest))
	}
	if err != nil {
		return h, fmt.Errorf("parse hash %q: %w", s, err)
	}
	if len(raw) != sha256.Size {
		return h, fmt.Errorf("parse hash %q: digest is %d bytes, want %d", s, len(raw), sha256.Size)
	}
	copy(h[:], raw)
	return h, nil
}
