package nix

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// EvalExprApply evaluates fn applied to the Nix expression expr with
// `nix eval --json --impure --apply FN --expr EXPR` and returns the JSON.
// --impure lets fn call builtins.getFlake on an unlocked reference, as
// `nix eval REF#attr` itself accepts one.
func (c CLI) EvalExprApply(ctx context.Context, expr, fn string) (json.RawMessage, error) {
	out, err := c.run(ctx, "eval", "--json", "--impure", "--apply", fn, "--expr", expr)
	if err != nil {
		return nil, err
	}
	if !json.Valid(out) {
		return nil, fmt.Errorf("nix eval %s: output is not JSON", expr)
	}
	return json.RawMessage(bytes.TrimSpace(out)), nil
}

// String is s as a Nix string literal.
func String(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
