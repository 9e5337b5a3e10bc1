package conformance

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProbeScripts renders the probe of every layout and checks it is
// valid sh; a layout the renderer refuses fails here already.
func TestProbeScripts(t *testing.T) {
	cases, err := loadCases(caseDirs())
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no layouts")
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if c.Err != nil {
				t.Fatal(c.Err)
			}
			e := newExpect(c.Layout, root)
			for _, s := range []string{e.probeScript(true, true), e.probeScript(false, false), e.markerScript("x")} {
				cmd := exec.Command("sh", "-n")
				cmd.Stdin = strings.NewReader(s)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("sh -n: %v\n%s\n%s", err, out, s)
				}
			}
		})
	}
}

func TestOptionProblems(t *testing.T) {
	for _, tc := range []struct {
		name          string
		declared, got string
		wantProblems  int
	}{
		{"userspace options are ignored", "defaults,nofail,X-mount.mkdir,x-systemd.automount", "rw,relatime", 0},
		{"umask shows as fmask and dmask", "umask=0077", "rw,fmask=0077,dmask=0077,codepage=437", 0},
		{"umask mismatch", "umask=0077", "rw,fmask=0022,dmask=0022", 2},
		{"compress level added by btrfs", "compress=zstd,noatime,subvol=/home", "rw,noatime,compress=zstd:3,space_cache=v2,subvolid=257,subvol=/home", 0},
		{"missing flag", "noatime", "rw,relatime", 1},
		{"wrong subvolume", "subvol=/nix", "rw,subvol=/home", 1},
		{"tmpfs mode and size", "size=2G,mode=0755", "rw,size=2097152k,mode=755", 0},
		{"ro must be in effect", "ro", "rw", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := optionProblems("ext4", strings.Split(tc.declared, ","), strings.Split(tc.got, ","))
			if len(got) != tc.wantProblems {
				t.Errorf("optionProblems(%q, %q) = %q, want %d problems", tc.declared, tc.got, got, tc.wantProblems)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"500M", 500 << 20, true}, {"1G", 1 << 30, true}, {"-1G", 1 << 30, true}, {"+64M", 64 << 20, true},
		{"100%", 0, false}, {"100%FREE", 0, false}, {"1.5G", 3 << 29, true},
	} {
		got, ok := parseBytes(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseBytes(%q) = %d, %v, want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
