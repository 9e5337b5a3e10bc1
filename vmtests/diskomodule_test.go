package vmtests

// Fidelity tests of flake/disko-module.nix, the stand-in for disko's NixOS
// module that gives the test systems' config.disko.devices the shape a real
// user's flake has: every default disko's option types fill in, and the
// internal options (functions, scripts, a _parent cycle) on every node.
//
// The shared disko cases (../../shared/disko-cases) hold, per layout,
// CASE.json (as users write it) and CASE.resolved.json (what disko's own
// module system made of it, internal options removed). The stand-in's value
// read through nix.DiskoPlain, the one way nixos-via reads a layout, must
// equal the resolved one.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/nix"
)

const (
	dmCasesDir = "../../shared/disko-cases"
	dmModule   = "flake/disko-module.nix"
)

var dmHooks = map[string]bool{
	"preCreateHook": true, "postCreateHook": true, "preMountHook": true,
	"postMountHook": true, "preUnmountHook": true, "postUnmountHook": true,
}

type dmCase struct {
	name     string
	file     string // CASE.json, absolute
	resolved []byte
}

func dmNeedNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		t.Skip("nix-instantiate is not installed (Debian: apt-get install nix-bin)")
	}
}

func dmCases(t *testing.T) []dmCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dmCasesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []dmCase
	for _, f := range files {
		if strings.HasSuffix(f, ".resolved.json") {
			continue
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		resolved, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".resolved.json")
		if err != nil {
			t.Fatalf("case %s: %v", name, err)
		}
		cases = append(cases, dmCase{name: name, file: abs, resolved: resolved})
	}
	if len(cases) == 0 {
		t.Skipf("shared disko cases not found under %s (they live in /work/shared/disko-cases)", dmCasesDir)
	}
	return cases
}

// dmStringLit writes s as a Nix string literal.
func dmStringLit(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`).Replace(s) + `"`
}

// dmModuleExpr is the module-shaped value of a case: the stand-in applied
// to the layout as users write it.
func dmModuleExpr(t *testing.T, c dmCase) string {
	t.Helper()
	mod, err := filepath.Abs(dmModule)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("(import (/. + %s)) (builtins.fromJSON (builtins.readFile (/. + %s)))", dmStringLit(mod), dmStringLit(c.file))
}

func dmEval(ctx context.Context, expr string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nix-instantiate", "--eval", "--strict", "--json", "--expr", expr)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nix-instantiate: %w: %s", err, tsTail(stderr.String(), 12))
	}
	return stdout.Bytes(), nil
}

func dmDecode(t *testing.T, what string, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// dmNormalise makes the stand-in's DiskoPlain output and disko's resolved
// value comparable, as the cases' README describes resolved.json: hooks
// that are "" and empty top-level collections are dropped (DiskoPlain keeps
// them), and "_index" is dropped (DiskoPlain drops it, resolved keeps it).
func dmNormalise(v any, top bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k == "_index" || dmHooks[k] && e == "" {
				continue
			}
			if m, ok := e.(map[string]any); ok && top && len(m) == 0 {
				continue
			}
			out[k] = dmNormalise(e, false)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = dmNormalise(e, false)
		}
		return out
	}
	return v
}

// dmDiff lists where got and want differ, one line per JSON path.
func dmDiff(path string, got, want any, out *[]string) {
	gm, gok := got.(map[string]any)
	wm, wok := want.(map[string]any)
	if gok && wok {
		keys := map[string]bool{}
		for k := range gm {
			keys[k] = true
		}
		for k := range wm {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			p := path + "." + k
			g, inG := gm[k]
			w, inW := wm[k]
			switch {
			case !inG:
				*out = append(*out, fmt.Sprintf("%s: got nothing, want %s", p, dmShow(w)))
			case !inW:
				*out = append(*out, fmt.Sprintf("%s: got %s, want nothing", p, dmShow(g)))
			default:
				dmDiff(p, g, w, out)
			}
		}
		return
	}
	gl, gok := got.([]any)
	wl, wok := want.([]any)
	if gok && wok && len(gl) == len(wl) {
		for i := range gl {
			dmDiff(fmt.Sprintf("%s[%d]", path, i), gl[i], wl[i], out)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		*out = append(*out, fmt.Sprintf("%s: got %s, want %s", path, dmShow(got), dmShow(want)))
	}
}

func dmShow(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// TestDiskoModuleMatchesDisko: for every shared case, the stand-in read
// through DiskoPlain equals what disko's module system resolved.
func TestDiskoModuleMatchesDisko(t *testing.T) {
	dmNeedNix(t)
	cases := dmCases(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := dmEval(ctx, "("+nix.DiskoPlain+") ("+dmModuleExpr(t, c)+")")
			if err != nil {
				t.Fatal(err)
			}
			got := dmNormalise(dmDecode(t, "stand-in", out), true)
			want := dmNormalise(dmDecode(t, "resolved", c.resolved), true)
			var diffs []string
			dmDiff("disko.devices", got, want, &diffs)
			if len(diffs) > 0 {
				t.Errorf("%d differences from %s.resolved.json:\n%s", len(diffs), c.name, strings.Join(diffs, "\n"))
			}
		})
	}
}

// TestDiskoModuleIsModuleShaped: without DiskoPlain the stand-in's value
// cannot be printed as JSON, as disko's cannot (functions, a _parent cycle),
// and with it the Go parser takes it.
func TestDiskoModuleIsModuleShaped(t *testing.T) {
	dmNeedNix(t)
	cases := dmCases(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := dmEval(ctx, dmModuleExpr(t, c))
			if err == nil {
				t.Fatalf("raw value printed as JSON, want a failure (a function or a cycle): %s", tsTail(string(out), 3))
			}
			msg := err.Error()
			if !strings.Contains(msg, "cannot convert a function to JSON") && !strings.Contains(msg, "infinite recursion") && !strings.Contains(msg, "stack overflow") {
				t.Errorf("raw value: got %v, want a function or infinite-recursion failure", err)
			}
			plain, err := dmEval(ctx, "("+nix.DiskoPlain+") ("+dmModuleExpr(t, c)+")")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := disko.Parse(plain); err != nil {
				t.Errorf("disko.Parse of DiskoPlain's output: %v", err)
			}
		})
	}
}

// dmInternalsExpr lists every node of a module-shaped value that has
// internal options, with the kind of each ("lambda", "functor" for an
// attribute set with __functor, else builtins.typeOf; "_parent" as
// "parent:TYPE" plus "+module" when it carries _module with a function
// among its args, "unset" when forcing it fails), its number of hooks and
// the type of the nearest node above it.
const dmInternalsExpr = `devices: let
  inherit (builtins) attrNames concatLists elemAt filter genList isAttrs isFunction isList isString length listToAttrs match substring tryEval typeOf;
  kind = v: if isFunction v then "lambda" else if isAttrs v && v ? __functor then "functor" else typeOf v;
  internal = n: substring 0 1 n == "_" && n != "_index";
  parentKind = p:
    let r = tryEval (p.type or "?"); in
    if !r.success then "unset"
    else "parent:" + r.value + (if p ? _module && isFunction (p._module.args.extendModules or null) && isString (p._module.args.name or null) then "+module" else "");
  walk = path: above: v:
    if isList v then concatLists (genList (i: walk "${path}[${toString i}]" above (elemAt v i)) (length v))
    else if !(isAttrs v) then [ ]
    else
      let
        names = attrNames v;
        ints = filter internal names;
        isNode = ints != [ ] && isString (v.type or null);
        here = if ints == [ ] then [ ] else [{
          inherit path above;
          type = if isString (v.type or null) then v.type else "";
          hooks = length (filter (n: match "(pre|post)(Create|Mount|Unmount)Hook" n != null && isString v.${n}) names);
          internals = listToAttrs (map (n: { name = n; value = if n == "_parent" then parentKind v._parent else kind v.${n}; }) ints);
        }];
      in
      here ++ concatLists (map (n: walk "${path}.${n}" (if isNode then v.type else above) v.${n}) (filter (n: !internal n) names));
in walk "" "" devices`

// dmNodeInternals are the internal options disko's module leaves on each
// kind of node, with the kinds of their values (read off disko's types with
// nixpkgs' module system: typed functionTo options become functors, untyped
// function defaults stay lambdas). "PARENT" stands for "parent:T+module"
// with T the node above.
var dmNodeInternals = func() map[string]map[string]string {
	device := map[string]string{"_config": "list", "_create": "string", "_meta": "set", "_mount": "set", "_pkgs": "functor", "_unmount": "set"}
	content := map[string]string{"_config": "list", "_create": "string", "_meta": "functor", "_mount": "set", "_parent": "PARENT", "_pkgs": "functor", "_unmount": "set"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	m := map[string]map[string]string{
		"top": {"_config": "set", "_create": "string", "_destroy": "string", "_destroyFormatMount": "string", "_disko": "string",
			"_formatMount": "string", "_legacyDestroy": "string", "_meta": "set", "_mount": "string", "_packages": "lambda",
			"_scripts": "lambda", "_unmount": "string"},
		"hybrid":              {"_create": "string"},
		"datasets":            {"__root": "set"},
		"filesystem":          with(content, "_pkgs", "lambda"),
		"bcachefs":            with(content, "_config", "set"),
		"zfs_fs":              with(content, "_createFilesystem", "bool", "_name", "string"),
		"bcachefs_filesystem": with(device, "_meta", "functor", "_parent", "unset"),
	}
	for _, t := range []string{"disk", "lvm_vg", "mdadm", "zpool", "nodev"} {
		m[t] = device
	}
	for _, t := range []string{"btrfs", "gpt", "luks", "lvm_pv", "mdraid", "swap", "table", "zfs", "zfs_volume"} {
		m[t] = content
	}
	return m
}()

// TestDiskoModuleInternals: every node of the stand-in carries the internal
// options disko's module puts there, of the same kinds, and the six hooks;
// _parent is the node above with its module arguments.
func TestDiskoModuleInternals(t *testing.T) {
	dmNeedNix(t)
	cases := dmCases(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := dmEval(ctx, "("+dmInternalsExpr+") ("+dmModuleExpr(t, c)+")")
			if err != nil {
				t.Fatal(err)
			}
			var nodes []struct {
				Path      string            `json:"path"`
				Above     string            `json:"above"`
				Type      string            `json:"type"`
				Hooks     int               `json:"hooks"`
				Internals map[string]string `json:"internals"`
			}
			if err := json.Unmarshal(out, &nodes); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, n := range nodes {
				kind, wantHooks := n.Type, 6
				switch {
				case n.Path == "":
					kind, wantHooks = "top", 0
				case strings.HasSuffix(n.Path, ".hybrid"):
					kind, wantHooks = "hybrid", 0
				case strings.HasSuffix(n.Path, ".datasets"):
					kind, wantHooks = "datasets", 0
				}
				want, ok := dmNodeInternals[kind]
				if !ok {
					t.Errorf("disko.devices%s: internal options %v on a node of type %q, which has none in disko", n.Path, n.Internals, n.Type)
					continue
				}
				seen[kind] = true
				want = resolveParent(want, n.Above)
				got := n.Internals
				if kind == "top" && got["_meta"] == "functor" {
					// disko's top-level _meta merges the devices' _meta sets:
					// a bcachefs filesystem's functor makes it one too.
					got = resolveParent(got, "")
					got["_meta"] = "set"
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("disko.devices%s (%s): internals\n got %v\nwant %v", n.Path, kind, got, want)
				}
				if n.Hooks != wantHooks {
					t.Errorf("disko.devices%s (%s): got %d hook strings, want %d", n.Path, kind, n.Hooks, wantHooks)
				}
			}
			if !seen["top"] {
				t.Errorf("no top-level internal options found")
			}
		})
	}
}

func resolveParent(m map[string]string, above string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v == "PARENT" {
			v = "parent:" + above + "+module"
		}
		out[k] = v
	}
	return out
}
