package nar

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// Vectors printed by Nix 2.8 (`nix hash path --base32` / `nix hash to-base32`).
func TestBase32Vectors(t *testing.T) {
	tests := []struct {
		hex, nix32 string
	}{
		// sha256 of a tree, base32 and SRI both printed by `nix hash path`.
		{"4cb3afd9cf5b2c759b3897297452e8dade09dfda5ddeabb13cf9ba41d293469d", "17a6jg943fpr7jqsppjxvbghkpnsx1978acp72dpab2vrzcszcsc"},
		// sha256 of the empty string: `nix hash to-base32 sha256:e3b0...`.
		{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"},
		{"00", "00"},
		{"01", "01"},
		{"ff", "7z"},
	}
	for _, tt := range tests {
		raw, _ := hex.DecodeString(tt.hex)
		if got := EncodeBase32(raw); got != tt.nix32 {
			t.Errorf("EncodeBase32(%s) = %s, want %s", tt.hex, got, tt.nix32)
		}
		back, err := DecodeBase32(tt.nix32)
		if err != nil {
			t.Fatalf("DecodeBase32(%s): %v", tt.nix32, err)
		}
		if !bytes.Equal(back, raw) {
			t.Errorf("DecodeBase32(%s) = %x, want %s", tt.nix32, back, tt.hex)
		}
	}
}

func TestBase32RoundTripAllLengths(t *testing.T) {
	for n := 1; n <= 64; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*37 + n)
		}
		s := EncodeBase32(b)
		if len(s) != Base32Len(n) {
			t.Fatalf("len(EncodeBase32(%d bytes)) = %d, want %d", n, len(s), Base32Len(n))
		}
		got, err := DecodeBase32(s)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("DecodeBase32(EncodeBase32(%x)) = %x, %v", b, got, err)
		}
	}
}

func TestDecodeBase32Refuses(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "invalid length"},
		{"bad length", "000", "invalid length"},
		{"letter e", strings.Repeat("0", 51) + "e", "invalid character"},
		{"letter u", "u" + strings.Repeat("0", 51), "invalid character"},
		{"uppercase", strings.Repeat("A", 52), "invalid character"},
		{"overflow", "z" + strings.Repeat("0", 51), "does not fit"},
	}
	for _, tt := range tests {
		_, err := DecodeBase32(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: DecodeBase32(%q) error = %v, want it to mention %q", tt.name, tt.in, err, tt.want)
		}
	}
}

func TestParseHashForms(t *testing.T) {
	want := sha256.Sum256([]byte("nixos-via"))
	h := Hash(want)
	forms := []string{h.String(), h.SRI(), "sha256:" + h.Base16(), h.Base16(), EncodeBase32(want[:]),
		"sha256:" + strings.TrimPrefix(h.SRI(), "sha256-")}
	for _, f := range forms {
		got, err := ParseHash(f)
		if err != nil {
			t.Errorf("ParseHash(%q): %v", f, err)
			continue
		}
		if got != h {
			t.Errorf("ParseHash(%q) = %s, want %s", f, got, h)
		}
	}
	if !strings.HasPrefix(h.String(), "sha256:") || len(h.String()) != 7+52 {
		t.Errorf("String() = %q, want sha256:<52 chars>", h.String())
	}
	if !strings.HasPrefix(h.SRI(), "sha256-") || len(h.SRI()) != 7+44 {
		t.Errorf("SRI() = %q, want sha256-<44 chars>", h.SRI())
	}
	for _, bad := range []string{"", "md5:abc", "sha1-AAAA", "sha256:xyz", "sha256-!!!!", "sha512-" + strings.Repeat("A", 88), strings.Repeat("0", 40)} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded, want an error", bad)
		}
	}
}
