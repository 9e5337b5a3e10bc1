package phase

import (
	"slices"
	"strings"
)

// ParseList parses --phases LIST: a comma list of phase names, blanks
// and repeats dropped, in the order given. An unknown name or an empty
// list is a *UsageError.
func ParseList(v string) ([]string, error) {
	var phases []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(All(), p) {
			return nil, Usagef("--phases: unknown phase %q (want kexec, disko, install, reboot)", p)
		}
		if !slices.Contains(phases, p) {
			phases = append(phases, p)
		}
	}
	if len(phases) == 0 {
		return nil, Usagef("--phases: no phase given")
	}
	return phases, nil
}
