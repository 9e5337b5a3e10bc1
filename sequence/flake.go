package sequence

import (
	"fmt"
	"strings"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// ParseFlake splits --flake REF#NAME into the flake reference ("." when
// REF is empty, so "#web" is the flake here) and the attribute to
// evaluate: NAME expands to nixosConfigurations."NAME".config as in
// nixos-anywhere, unless it already starts with nixosConfigurations.
// A missing NAME is a *phase.UsageError.
func ParseFlake(v string) (ref, attr string, err error) {
	i := strings.LastIndex(v, "#")
	if i < 0 || i == len(v)-1 {
		return "", "", phase.Usagef("--flake %q: missing #NAME: please specify the configuration, e.g. .#myhost", v)
	}
	ref, attr = v[:i], v[i+1:]
	if ref == "" {
		ref = "."
	}
	if !strings.HasPrefix(attr, "nixosConfigurations.") {
		attr = fmt.Sprintf("nixosConfigurations.%q.config", attr)
	}
	return ref, attr, nil
}
