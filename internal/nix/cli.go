package nix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nixos-via/nixos-via/internal/tail"
)

// CLI runs the local Nix command line tools. The zero value runs "nix" from
// $PATH with the nix-command and flakes features enabled.
type CLI struct {
	// Nix is the nix binary; "" means "nix" from $PATH.
	Nix string
	// Args go before every subcommand's own arguments, e.g.
	// {"--option", "substituters", ""} or {"--store", "/some/root"}.
	Args []string
	// Env is added to the environment of every command.
	Env []string
	// Log, when set, receives the commands' stderr (build logs) as they run.
	Log io.Writer
}

const stderrTail = 2048

// Build builds the installables (e.g. "path:/x#nixosConfigurations.h.config.system.build.toplevel")
// without a result link and returns their output paths.
func (c CLI) Build(ctx context.Context, installables ...string) ([]string, error) {
	if len(installables) == 0 {
		return nil, errors.New("nix build: no installables")
	}
	// --json rather than --print-out-paths: Nix 2.8 lacks the latter.
	out, err := c.run(ctx, append([]string{"build", "--no-link", "--json"}, installables...)...)
	if err != nil {
		return nil, err
	}
	var results []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		return nil, fmt.Errorf("nix build %s: parse output: %w", strings.Join(installables, " "), err)
	}
	var paths []string
	for _, r := range results {
		for _, p := range sortedValues(r.Outputs) {
			if err := CheckStorePath(p); err != nil {
				return nil, fmt.Errorf("nix build %s: %w", strings.Join(installables, " "), err)
			}
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("nix build %s: no output paths", strings.Join(installables, " "))
	}
	return paths, nil
}

func sortedValues(m map[string]string) []string {
	// "out" first, then the rest by name, so a single-output build is paths[0].
	var out []string
	if v, ok := m["out"]; ok {
		out = append(out, v)
	}
	var rest []string
	for k := range m {
		if k != "out" {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		out = append(out, m[k])
	}
	return out
}

// Eval evaluates installable with `nix eval --json` and returns the JSON.
func (c CLI) Eval(ctx context.Context, installable string) (json.RawMessage, error) {
	out, err := c.run(ctx, "eval", "--json", installable)
	if err != nil {
		return nil, err
	}
	if !json.Valid(out) {
		return nil, fmt.Errorf("nix eval %s: output is not JSON", installable)
	}
	return json.RawMessage(bytes.TrimSpace(out)), nil
}

// EvalInto evaluates installable and decodes the JSON into v.
func (c CLI) EvalInto(ctx context.Context, installable string, v any) error {
	raw, err := c.Eval(ctx, installable)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("nix eval %s: decode: %w", installable, err)
	}
	return nil
}

// PathInfo returns the path info of paths themselves (not their closure).
func (c CLI) PathInfo(ctx context.Context, paths ...string) ([]PathInfo, error) {
	return c.pathInfo(ctx, false, paths)
}

// Closure returns the path info of every path in the closure of paths,
// sorted by path.
func (c CLI) Closure(ctx context.Context, paths ...string) ([]PathInfo, error) {
	return c.pathInfo(ctx, true, paths)
}

func (c CLI) pathInfo(ctx context.Context, recursive bool, paths []string) ([]PathInfo, error) {
	if len(paths) == 0 {
		return nil, errors.New("nix path-info: no paths")
	}
	for _, p := range paths {
		if err := CheckStorePath(p); err != nil {
			return nil, fmt.Errorf("nix path-info: %w", err)
		}
	}
	args := []string{"path-info", "--json"}
	if recursive {
		args = append(args, "--recursive")
	}
	out, err := c.run(ctx, append(args, paths...)...)
	if err != nil {
		return nil, err
	}
	infos, err := ParsePathInfoJSON(out)
	if err != nil {
		return nil, fmt.Errorf("nix path-info %s: %w", strings.Join(paths, " "), err)
	}
	return infos, nil
}

func (c CLI) run(ctx context.Context, args ...string) ([]byte, error) {
	bin := c.Nix
	if bin == "" {
		bin = "nix"
	}
	return c.runBin(ctx, bin, true, args...)
}

// runBin runs bin with c's arguments (and, for the nix command itself,
// the experimental features it needs) before args.
func (c CLI) runBin(ctx context.Context, bin string, features bool, args ...string) ([]byte, error) {
	var full []string
	if features {
		full = []string{"--extra-experimental-features", "nix-command flakes"}
	}
	full = append(full, c.Args...)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(os.Environ(), c.Env...)
	var stdout bytes.Buffer
	stderr := tail.New(stderrTail)
	cmd.Stdout = &stdout
	if c.Log != nil {
		cmd.Stderr = io.MultiWriter(stderr, c.Log)
	} else {
		cmd.Stderr = stderr
	}
	what := filepath.Base(bin) + " " + args[0]
	if len(args) > 1 && features {
		what += " " + args[len(args)-1]
	}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return nil, fmt.Errorf("%s: %w: %s", what, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
