package disko

import (
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
)

// Issue is one problem found in a layout, located by its JSON path.
type Issue struct {
	Path string // e.g. disk.main.content.partitions.root.content.format
	Msg  string
}

func (i Issue) String() string {
	if i.Path == "" {
		return i.Msg
	}
	return i.Path + ": " + i.Msg
}

// ValidationError lists every problem found in a layout. Nothing may be
// rendered from a layout that produced one.
type ValidationError struct {
	Issues []Issue
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		parts[i] = is.String()
	}
	return strings.Join(parts, "\n")
}

// issues collects problems while a layout is parsed and checked.
type issues struct {
	list []Issue
}

func (s *issues) add(path, format string, args ...any) {
	s.list = append(s.list, Issue{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (s *issues) err() error {
	if len(s.list) == 0 {
		return nil
	}
	return &ValidationError{Issues: s.list}
}

// joinPath appends an attribute name to a JSON path, quoting names that
// would make the path ambiguous.
func joinPath(base, key string) string {
	k := key
	if k == "" || strings.ContainsAny(k, ". \"[]") {
		k = fmt.Sprintf("%q", key)
	}
	if base == "" {
		return k
	}
	return base + "." + k
}

func indexPath(base string, i int) string {
	return fmt.Sprintf("%s[%d]", base, i)
}

// obj reads the fields of one JSON object, remembers which were consumed
// and reports the rest as unknown.
type obj struct {
	m    map[string]any
	path string
	used map[string]bool
	errs *issues
}

func newObj(v any, path string, errs *issues) (*obj, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		errs.add(path, "expected an object, got %s", jsonKind(v))
		return nil, false
	}
	return &obj{m: m, path: path, used: map[string]bool{}, errs: errs}, true
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func (o *obj) p(key string) string { return joinPath(o.path, key) }

// has reports whether key is present and not null.
func (o *obj) has(key string) bool {
	v, ok := o.m[key]
	return ok && v != nil
}

func (o *obj) raw(key string) (any, bool) {
	o.used[key] = true
	v, ok := o.m[key]
	return v, ok
}

// str returns a string field or def when absent.
func (o *obj) str(key, def string) string {
	v, ok := o.raw(key)
	if !ok {
		return def
	}
	s, ok := v.(string)
	if !ok {
		o.errs.add(o.p(key), "expected a string, got %s", jsonKind(v))
		return def
	}
	return s
}

// reqStr returns a required string field.
func (o *obj) reqStr(key string) string {
	v, ok := o.raw(key)
	if !ok || v == nil {
		o.errs.add(o.p(key), "required field is missing")
		return ""
	}
	s, ok := v.(string)
	if !ok {
		o.errs.add(o.p(key), "expected a string, got %s", jsonKind(v))
		return ""
	}
	return s
}

// optStr returns a nullable string field (nil when absent or null).
func (o *obj) optStr(key string) *string {
	v, ok := o.raw(key)
	if !ok || v == nil {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		o.errs.add(o.p(key), "expected a string or null, got %s", jsonKind(v))
		return nil
	}
	return &s
}

func (o *obj) boolean(key string, def bool) bool {
	v, ok := o.raw(key)
	if !ok {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		o.errs.add(o.p(key), "expected a boolean, got %s", jsonKind(v))
		return def
	}
	return b
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil || i > 1<<31 || i < -(1<<31) {
			return 0, false
		}
		return int(i), true
	case float64:
		if n != float64(int(n)) {
			return 0, false
		}
		return int(n), true
	}
	return 0, false
}

func (o *obj) integer(key string, def int) int {
	v, ok := o.raw(key)
	if !ok {
		return def
	}
	i, ok := toInt(v)
	if !ok {
		o.errs.add(o.p(key), "expected an integer, got %s", jsonKind(v))
		return def
	}
	return i
}

func (o *obj) optInt(key string) *int {
	v, ok := o.raw(key)
	if !ok || v == nil {
		return nil
	}
	i, ok := toInt(v)
	if !ok {
		o.errs.add(o.p(key), "expected an integer or null, got %s", jsonKind(v))
		return nil
	}
	return &i
}

func (o *obj) strList(key string, def []string) []string {
	v, ok := o.raw(key)
	if !ok {
		return append([]string(nil), def...)
	}
	l, ok := v.([]any)
	if !ok {
		o.errs.add(o.p(key), "expected a list of strings, got %s", jsonKind(v))
		return append([]string(nil), def...)
	}
	out := make([]string, 0, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			o.errs.add(indexPath(o.p(key), i), "expected a string, got %s", jsonKind(e))
			continue
		}
		out = append(out, s)
	}
	return out
}

func (o *obj) intList(key string) []int {
	v, ok := o.raw(key)
	if !ok {
		return []int{}
	}
	l, ok := v.([]any)
	if !ok {
		o.errs.add(o.p(key), "expected a list of integers, got %s", jsonKind(v))
		return []int{}
	}
	out := make([]int, 0, len(l))
	for i, e := range l {
		n, ok := toInt(e)
		if !ok {
			o.errs.add(indexPath(o.p(key), i), "expected an integer, got %s", jsonKind(e))
			continue
		}
		out = append(out, n)
	}
	return out
}

// strMap reads an attrset of strings (zfs options and the like). Numbers
// and booleans are accepted and printed as Nix would coerce them.
func (o *obj) strMap(key string) map[string]string {
	out := map[string]string{}
	v, ok := o.raw(key)
	if !ok || v == nil {
		return out
	}
	m, ok := v.(map[string]any)
	if !ok {
		o.errs.add(o.p(key), "expected an object of strings, got %s", jsonKind(v))
		return out
	}
	for k, e := range m {
		s, ok := e.(string)
		if !ok {
			o.errs.add(joinPath(o.p(key), k), "expected a string, got %s", jsonKind(e))
			continue
		}
		out[k] = s
	}
	return out
}

// objects yields, in name order, the objects of the attribute set key
// with their names; an entry that is not an object is reported and
// skipped.
func (o *obj) objects(key string) iter.Seq2[string, *obj] {
	return func(yield func(string, *obj) bool) {
		names, m := o.attrs(key)
		for _, name := range names {
			c, ok := newObj(m[name], joinPath(o.p(key), name), o.errs)
			if !ok {
				continue
			}
			if !yield(name, c) {
				return
			}
		}
	}
}

// attrs returns the sorted names and values of an attrset field.
func (o *obj) attrs(key string) ([]string, map[string]any) {
	v, ok := o.raw(key)
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		o.errs.add(o.p(key), "expected an object, got %s", jsonKind(v))
		return nil, nil
	}
	return sortedKeys(m), m
}

// sortedKeys is m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// hooks reads the six hook fields every node accepts.
func (o *obj) hooks() Hooks {
	return Hooks{
		PreCreate:   o.str("preCreateHook", ""),
		PostCreate:  o.str("postCreateHook", ""),
		PreMount:    o.str("preMountHook", ""),
		PostMount:   o.str("postMountHook", ""),
		PreUnmount:  o.str("preUnmountHook", ""),
		PostUnmount: o.str("postUnmountHook", ""),
	}
}

// done reports every field that was not consumed. Fields starting with "_"
// are disko-internal (present in a resolved layout) and ignored.
func (o *obj) done() {
	for _, k := range sortedKeys(o.m) {
		if o.used[k] || strings.HasPrefix(k, "_") {
			continue
		}
		o.errs.add(o.p(k), "unknown field")
	}
}
