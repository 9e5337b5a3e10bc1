package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestVersion(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef0123"}}
	tests := []struct {
		name     string
		main     string
		settings []debug.BuildSetting
		want     string
	}{
		{"module version", "v1.2.3", rev, "v1.2.3"},
		{"checkout", "(devel)", rev, "dev-0123456789ab"},
		{"no main version", "", rev, "dev-0123456789ab"},
		{"short revision", "(devel)", []debug.BuildSetting{{Key: "vcs.revision", Value: "0123"}}, "dev"},
		{"nothing", "(devel)", nil, "dev"},
		{"empty", "", nil, "dev"},
	}
	for _, tt := range tests {
		if got := version(tt.main, tt.settings); got != tt.want {
			t.Errorf("%s: version(%q, ...) = %q, want %q", tt.name, tt.main, got, tt.want)
		}
	}
}
