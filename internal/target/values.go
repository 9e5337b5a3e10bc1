package target

import (
	"strconv"
	"strings"
)

// Values are the key=value lines a script printed (echo "free=$n"): each
// key's values in the order printed.
type Values map[string][]string

// ParseValues reads the key=value lines of a script's output. A line is
// split at its first "=", so a value may hold more; a line without one
// is skipped, and a line's "\r" ending is dropped.
func ParseValues(out string) Values {
	v := Values{}
	for _, line := range strings.Split(out, "\n") {
		k, val, ok := strings.Cut(strings.TrimSuffix(line, "\r"), "=")
		if ok {
			v[k] = append(v[k], val)
		}
	}
	return v
}

// Get is key's last value, "" when it has none.
func (v Values) Get(key string) string {
	if vals := v[key]; len(vals) > 0 {
		return vals[len(vals)-1]
	}
	return ""
}

// Has says the output has a line for key.
func (v Values) Has(key string) bool { return len(v[key]) > 0 }

// Int is key's last value as a number (space around it ignored); ok is
// false when there is none or it is not a number.
func (v Values) Int(key string) (n int64, ok bool) {
	if !v.Has(key) {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v.Get(key)), 10, 64)
	return n, err == nil
}
