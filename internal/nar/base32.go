package nar

import (
	"fmt"
	"strings"
)

// nix32Alphabet is the digit set of Nix's base32: 0-9 and a-z without e, o, u and t.
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// EncodeBase32 renders b in Nix's base32 form (as in store path hashes and
// "sha256:<base32>" narHashes). Nix's base32 reads the bytes as one little-endian
// number and prints its 5-bit digits from the most significant one.
func EncodeBase32(b []byte) string {
	n := Base32Len(len(b))
	out := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		bit := i * 5
		byteIdx, shift := bit/8, uint(bit%8)
		c := b[byteIdx] >> shift
		if byteIdx+1 < len(b) {
			c |= b[byteIdx+1] << (8 - shift)
		}
		out[n-1-i] = nix32Alphabet[c&0x1f]
	}
	return string(out)
}

// Base32Len is the length of the Nix base32 form of n bytes.
func Base32Len(n int) int {
	if n == 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// DecodeBase32 parses Nix's base32 form. It refuses characters outside the
// alphabet, lengths no byte count produces and digits that overflow the value.
func DecodeBase32(s string) ([]byte, error) {
	n := len(s) * 5 / 8
	if n == 0 || Base32Len(n) != len(s) {
		return nil, fmt.Errorf("nix base32 %q: invalid length %d", s, len(s))
	}
	out := make([]byte, n)
	for i := 0; i < len(s); i++ {
		digit := strings.IndexByte(nix32Alphabet, s[len(s)-1-i])
		if digit < 0 {
			return nil, fmt.Errorf("nix base32 %q: invalid character %q", s, s[len(s)-1-i])
		}
		bit := i * 5
		byteIdx, shift := bit/8, uint(bit%8)
		out[byteIdx] |= byte(digit << shift)
		carry := byte(digit >> (8 - shift))
		if byteIdx+1 < n {
			out[byteIdx+1] |= carry
		} else if carry != 0 {
			return nil, fmt.Errorf("nix base32 %q: value does not fit in %d bytes", s, n)
		}
	}
	return out, nil
}
