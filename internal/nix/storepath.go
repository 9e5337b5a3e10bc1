// Package nix drives the local Nix CLI (build, eval, path-info) and renders
// the store metadata nixos-via needs: closures with narHash, narSize,
// references and deriver, and registrations in the `nix-store --load-db` format.
package nix

import (
	"fmt"
	"strings"
)

// StoreDir is the only store directory nixos-via installs into.
const StoreDir = "/nix/store"

const (
	hashPartLen = 32
	maxNameLen  = 211
)

// CheckStorePath reports whether p is a well-formed path directly in
// /nix/store: "/nix/store/<32 nix-base32 chars>-<name>", where name uses only
// the characters Nix allows and does not start with a dot. A path that passes
// cannot escape the store directory.
func CheckStorePath(p string) error {
	base, ok := strings.CutPrefix(p, StoreDir+"/")
	if !ok {
		return fmt.Errorf("store path %q: not in %s", p, StoreDir)
	}
	return CheckStorePathBase(base)
}

// CheckStorePathBase is CheckStorePath for the part after "/nix/store/".
func CheckStorePathBase(base string) error {
	if len(base) < hashPartLen+2 || base[hashPartLen] != '-' {
		return fmt.Errorf("store path %q: want <32-char hash>-<name>", base)
	}
	for i := 0; i < hashPartLen; i++ {
		if !strings.ContainsRune("0123456789abcdfghijklmnpqrsvwxyz", rune(base[i])) {
			return fmt.Errorf("store path %q: invalid character %q in hash part", base, base[i])
		}
	}
	name := base[hashPartLen+1:]
	if len(name) > maxNameLen {
		return fmt.Errorf("store path %q: name longer than %d characters", base, maxNameLen)
	}
	if name[0] == '.' {
		return fmt.Errorf("store path %q: name starts with a dot", base)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+-._?=", c) >= 0) {
			return fmt.Errorf("store path %q: invalid character %q in name", base, c)
		}
	}
	return nil
}
