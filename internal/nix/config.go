package nix

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Substituters returns the substituters this Nix uses, in order: the
// value of `substituters` that `nix show-config --json` reports after
// c.Args, so `--option substituters X` replaces the configured list and
// `extra-substituters` is already appended, as for every other nix call.
// It reads the configuration only; no cache is contacted.
func (c CLI) Substituters(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "show-config", "--json")
	if err != nil {
		return nil, err
	}
	return parseSubstituters(out)
}

// parseSubstituters reads `substituters` from `nix show-config --json`
// output: {"substituters": {"value": [...]}} (a string of URLs separated by
// whitespace in some Nix versions).
func parseSubstituters(out []byte) ([]string, error) {
	var config map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(out, &config); err != nil {
		return nil, fmt.Errorf("nix show-config: parse output: %w", err)
	}
	setting, ok := config["substituters"]
	if !ok || len(setting.Value) == 0 {
		return nil, fmt.Errorf("nix show-config: no substituters setting")
	}
	var list []string
	if err := json.Unmarshal(setting.Value, &list); err == nil {
		return nonEmpty(list), nil
	}
	var text string
	if err := json.Unmarshal(setting.Value, &text); err != nil {
		return nil, fmt.Errorf("nix show-config: substituters is %s, want a list or a string", setting.Value)
	}
	return strings.Fields(text), nil
}

func nonEmpty(list []string) []string {
	out := []string{}
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
