package disko

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// casesDir holds the shared disko cases: CASE.json (raw disko.devices),
// CASE.resolved.json (disko's own default resolution) and CASE.expect.md
// (disko's own command order).
const casesDir = "../../shared/disko-cases"

type testCase struct {
	name     string
	raw      []byte
	resolved []byte
	expect   string
}

func loadCases(t testing.TB) []testCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(casesDir, "*.resolved.json"))
	if err != nil || len(files) == 0 {
		t.Skipf("shared disko cases not found under %s (they live in /work/shared/disko-cases)", casesDir)
	}
	var out []testCase
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".resolved.json")
		read := func(suffix string) []byte {
			b, err := os.ReadFile(filepath.Join(casesDir, name+suffix))
			if err != nil {
				t.Fatalf("read case %s: %v", name, err)
			}
			return b
		}
		out = append(out, testCase{name: name, raw: read(".json"), resolved: read(".resolved.json"), expect: string(read(".expect.md"))})
	}
	return out
}

func normJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

func TestResolvedMatchesDisko(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.name, func(t *testing.T) {
			l, err := Parse(c.raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := l.ResolvedJSON()
			if err != nil {
				t.Fatal(err)
			}
			want := normJSON(t, c.resolved)
			if g := normJSON(t, got); !reflect.DeepEqual(g, want) {
				diffJSON(t, "", g, want)
			}
			// A resolved layout parses to itself.
			l2, err := Parse(c.resolved)
			if err != nil {
				t.Fatalf("Parse(resolved): %v", err)
			}
			again, _ := l2.ResolvedJSON()
			if g := normJSON(t, again); !reflect.DeepEqual(g, want) {
				diffJSON(t, "(re-parsed)", g, want)
			}
		})
	}
}

// diffJSON reports the first paths where got and want differ.
func diffJSON(t *testing.T, path string, got, want any) {
	t.Helper()
	gm, gok := got.(map[string]any)
	wm, wok := want.(map[string]any)
	if gok && wok {
		for k, wv := range wm {
			gv, ok := gm[k]
			if !ok {
				t.Errorf("%s.%s: missing, want %v", path, k, wv)
				continue
			}
			diffJSON(t, path+"."+k, gv, wv)
		}
		for k, gv := range gm {
			if _, ok := wm[k]; !ok {
				t.Errorf("%s.%s: unexpected %v", path, k, gv)
			}
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: got %v, want %v", path, got, want)
	}
}

// expectSection returns the body of a "## Title" section of an expect.md.
func expectSection(md, title string) string {
	i := strings.Index(md, "\n## "+title)
	if i < 0 {
		return ""
	}
	rest := md[i+4+len(title):]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// expectBlock returns the first fenced code block of a section.
func expectBlock(md, title string) string {
	s := expectSection(md, title)
	i := strings.Index(s, "```")
	if i < 0 {
		return ""
	}
	s = s[i+3:]
	s = s[strings.Index(s, "\n")+1:]
	return s[:strings.Index(s, "```")]
}

func TestNixOSConfigMatchesDisko(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.name, func(t *testing.T) {
			l, err := Parse(c.raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := l.NixOSJSON()
			if err != nil {
				t.Fatal(err)
			}
			want := normJSON(t, []byte(expectBlock(c.expect, "NixOS configuration")))
			if g := normJSON(t, got); !reflect.DeepEqual(g, want) {
				t.Logf("got:\n%s", got)
				diffJSON(t, "", g, want)
			}
		})
	}
}
