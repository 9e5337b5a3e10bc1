// Package buildinfo says which build of nixos-via this is.
package buildinfo

import "runtime/debug"

// Version is the module version of the build; a build from a checkout
// without one is "dev-" and the first 12 digits of its VCS revision, and
// a build without either is "dev".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return version(bi.Main.Version, bi.Settings)
}

// version is Version of a main module version and build settings.
func version(v string, settings []debug.BuildSetting) string {
	for _, s := range settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			if v == "" || v == "(devel)" {
				v = "dev-" + s.Value[:12]
			}
		}
	}
	if v != "" && v != "(devel)" {
		return v
	}
	return "dev"
}
