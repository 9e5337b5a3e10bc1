package nix

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Platforms returns the systems this Nix builds for: its `system` and
// its `extra-platforms`, as `nix show-config --json` reports them after
// c.Args. It reads the configuration only.
func (c CLI) Platforms(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "show-config", "--json")
	if err != nil {
		return nil, err
	}
	return parsePlatforms(out)
}

// parsePlatforms reads `system` and `extra-platforms` from `nix
// show-config --json` output (a list, or a string of names separated by
// whitespace in some Nix versions).
func parsePlatforms(out []byte) ([]string, error) {
	var config map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(out, &config); err != nil {
		return nil, fmt.Errorf("nix show-config: %w", err)
	}
	var system string
	if err := json.Unmarshal(config["system"].Value, &system); err != nil || system == "" {
		return nil, fmt.Errorf("nix show-config: no system")
	}
	list := []string{system}
	extra := config["extra-platforms"].Value
	var names []string
	if err := json.Unmarshal(extra, &names); err != nil {
		var s string
		if json.Unmarshal(extra, &s) == nil {
			names = strings.Fields(s)
		}
	}
	return append(list, names...), nil
}

// BuildsFor says whether this Nix can build a derivation for system, as
// nixos-anywhere finds out: the system is its own or one of its extra
// platforms, or a trivial derivation for it builds (a remote builder or
// an emulator may serve it). The trial builds one tiny path, the same one
// every time, so a machine that could once needs no second build.
func (c CLI) BuildsFor(ctx context.Context, system string) (bool, error) {
	platforms, err := c.Platforms(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range platforms {
		if p == system {
			return true, nil
		}
	}
	expr := fmt.Sprintf(`derivation { system = %q; name = "nixos-via-builds-for"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }`, system)
	_, err = c.run(ctx, "build", "--no-link", "--impure", "--expr", expr)
	return err == nil, nil
}

// SystemOfArch is the Nix system of a Linux machine whose `uname -m` is
// arch ("" when Nix has no name for it).
func SystemOfArch(arch string) string {
	switch arch {
	case "x86_64", "amd64":
		return "x86_64-linux"
	case "aarch64", "arm64":
		return "aarch64-linux"
	case "i686", "i586", "i486", "i386":
		return "i686-linux"
	case "armv7l", "armv6l", "riscv64", "powerpc64le", "loongarch64":
		return arch + "-linux"
	}
	return ""
}
