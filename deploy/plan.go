package deploy

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Change is one package of the closure diff, as nvd diff shows it: a name
// whose versions differ between the running system and the new one.
type Change struct {
	Name string
	Old  []string // versions in the running system's closure; nil: added
	New  []string // versions in the new closure; nil: removed
}

// String is the change as one plan line: "[U.] hello 2.10 -> 2.12",
// "[A+] jq 1.7", "[R-] curl 8.5".
func (c Change) String() string {
	old, new := strings.Join(c.Old, ", "), strings.Join(c.New, ", ")
	switch {
	case c.Old == nil:
		return strings.TrimSpace("[A+] " + c.Name + " " + new)
	case c.New == nil:
		return strings.TrimSpace("[R-] " + c.Name + " " + old)
	}
	return fmt.Sprintf("[U.] %s %s -> %s", c.Name, orNone(old), orNone(new))
}

func orNone(v string) string {
	if v == "" {
		return "(no version)"
	}
	return v
}

// SplitName splits a store path's name (after the hash) into the package
// name and its version, as Nix's parseDrvName does: the version starts at
// the first "-" followed by a digit ("hello-2.12.1" is hello, 2.12.1);
// a name without one has no version.
func SplitName(name string) (pname, version string) {
	for i := 0; i+1 < len(name); i++ {
		if name[i] == '-' && name[i+1] >= '0' && name[i+1] <= '9' {
			return name[:i], name[i+1:]
		}
	}
	return name, ""
}

// storeName is the name of a store path after its hash: "hello-2.12.1".
func storeName(p string) string {
	base := path.Base(p)
	if i := strings.IndexByte(base, '-'); i >= 0 {
		return base[i+1:]
	}
	return base
}

// Diff is the package changes from the running system's closure (old
// store paths) to the new one, sorted by name: names only one side has
// are added or removed; names on both whose sets of versions differ are
// updated. Paths whose name and version are the same on both sides (a
// rebuild) are not changes of a package and are left out, as nvd does.
func Diff(old, new []string) []Change {
	versions := func(paths []string) map[string][]string {
		m := map[string][]string{}
		for _, p := range paths {
			n, v := SplitName(storeName(p))
			if !contains(m[n], v) {
				m[n] = append(m[n], v)
			}
		}
		for n := range m {
			sort.Strings(m[n])
		}
		return m
	}
	o, n := versions(old), versions(new)
	var out []Change
	for name, nv := range n {
		ov, ok := o[name]
		switch {
		case !ok:
			out = append(out, Change{Name: name, New: nv})
		case strings.Join(ov, "\x00") != strings.Join(nv, "\x00"):
			out = append(out, Change{Name: name, Old: ov, New: nv})
		}
	}
	for name, ov := range o {
		if _, ok := n[name]; !ok {
			out = append(out, Change{Name: name, Old: ov})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
