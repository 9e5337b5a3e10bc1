package nix

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// DiskoPlain is a Nix function from the value of disko.devices to plain
// data that `--json` can print. disko's NixOS module puts internal options
// on every device: "_parent" (a reference back up the tree, so a cycle),
// "_module" (the module arguments, pkgs among them), "_pkgs", "_meta" and
// "_scripts" (functions), "_create" and friends (its own scripts). Every
// attribute whose name starts with "_" is dropped here, in Nix, before
// anything is forced, so none of them is ever evaluated. The user-facing
// options the module filled with defaults stay. A function under any other
// name is not layout data: evaluation fails naming its attribute path.
const DiskoPlain = `let
  plain = path: v:
    if builtins.isAttrs v then
      builtins.mapAttrs (n: plain "${path}.${n}")
        (removeAttrs v (builtins.filter (n: builtins.substring 0 1 n == "_") (builtins.attrNames v)))
    else if builtins.isList v then
      builtins.genList (i: plain "${path}[${toString i}]" (builtins.elemAt v i)) (builtins.length v)
    else if builtins.isFunction v then
      throw "disko.devices${path} is a function, which a disk layout cannot hold"
    else v;
in plain ""`

// EvalLayout evaluates installable, the disko.devices of a configuration
// (e.g. "path:/x#nixosConfigurations.h.config.disko.devices"), as plain
// JSON: the one way nixos-via reads a layout from a flake, whether the
// value comes from disko's module (with its internal options) or is a plain
// attribute set.
func (c CLI) EvalLayout(ctx context.Context, installable string) (json.RawMessage, error) {
	return c.EvalApply(ctx, installable, DiskoPlain)
}

// EvalApply evaluates fn (a Nix function) applied to installable with
// `nix eval --json --apply` and returns the JSON.
func (c CLI) EvalApply(ctx context.Context, installable, fn string) (json.RawMessage, error) {
	out, err := c.run(ctx, "eval", "--json", "--apply", fn, installable)
	if err != nil {
		return nil, err
	}
	if !json.Valid(out) {
		return nil, fmt.Errorf("nix eval %s: output is not JSON", installable)
	}
	return json.RawMessage(bytes.TrimSpace(out)), nil
}

// InstantiateLayout evaluates a layout file written in Nix (a pure
// expression for disko.devices, or { disko.devices = …; }) as plain JSON,
// with nix-instantiate next to c's nix (or from $PATH), through DiskoPlain.
func (c CLI) InstantiateLayout(ctx context.Context, file string) (json.RawMessage, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("nix-instantiate %s: %w", file, err)
	}
	bin := "nix-instantiate"
	if c.Nix != "" {
		bin = filepath.Join(filepath.Dir(c.Nix), "nix-instantiate")
	}
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("%s: evaluating a .nix layout needs nix-instantiate on PATH (or export it: nix eval --json): %w", file, err)
	}
	expr := fmt.Sprintf("(%s) (import %s)", DiskoPlain, nixPathLiteral(abs))
	out, err := c.runBin(ctx, bin, false, "--eval", "--strict", "--json", "--expr", expr)
	if err != nil {
		return nil, err
	}
	if !json.Valid(out) {
		return nil, fmt.Errorf("nix-instantiate %s: output is not JSON", file)
	}
	return json.RawMessage(bytes.TrimSpace(out)), nil
}

// nixPathLiteral writes an absolute path as a Nix expression: a path
// literal where its characters allow, else a string turned into a path.
func nixPathLiteral(abs string) string {
	plain := true
	for _, r := range abs {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '.' || r == '_' || r == '-' || r == '+') {
			plain = false
		}
	}
	if plain {
		return abs
	}
	q := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`).Replace(abs)
	return `(/. + "` + q + `")`
}

// LayoutAttr names the disko layout of the NixOS configuration at attr
// (e.g. nixosConfigurations."h".config) in flake ref, for EvalLayout.
func LayoutAttr(ref, attr string) string { return ref + "#" + attr + ".disko.devices" }
