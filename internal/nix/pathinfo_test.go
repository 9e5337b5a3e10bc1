package nix

import (
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/nar"
)

const (
	midPath  = "/nix/store/kccl8vci2l6va686lvfhzab0mv66yfmy-via-mid"
	leafPath = "/nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-via-leaf"
	midDrv   = "/nix/store/mspa1sl5x48kcpcb4j61hfy7hwp1xkr2-via-mid.drv"
	midSRI   = "sha256-FP1qm1RCvoMJpF/6ZhgaKboqcQxeV4Ww+UVlar6y4JY="
	leafSRI  = "sha256-bNDjI/04e8XplmpoqzmrOtgKqV8MhL+Z3RafKktIofI="
)

func mustHash(t *testing.T, s string) nar.Hash {
	t.Helper()
	h, err := nar.ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestParsePathInfoJSONShapes(t *testing.T) {
	midHash, leafHash := mustHash(t, midSRI), mustHash(t, leafSRI)
	tests := []struct {
		name string
		json string
	}{
		{"nix 2.8 array, SRI (as printed here)", `[
 {"path":"` + midPath + `","narHash":"` + midSRI + `","narSize":800,"references":["` + leafPath + `"],"deriver":"` + midDrv + `","registrationTime":1795318013,"ultimate":true},
 {"path":"` + leafPath + `","narHash":"` + leafSRI + `","narSize":1616,"references":[],"valid":true}]`},
		{"older array, sha256:base32", `[
 {"path":"` + leafPath + `","narHash":"` + leafHash.String() + `","narSize":1616,"references":[]},
 {"path":"` + midPath + `","narHash":"` + midHash.String() + `","narSize":800,"references":["` + leafPath + `"],"deriver":"` + midDrv + `"}]`},
		{"2.19+ object keyed by path", `{
 "` + midPath + `":{"ca":null,"deriver":"` + midDrv + `","narHash":"` + midSRI + `","narSize":800,"references":["` + leafPath + `"],"signatures":[],"ultimate":true},
 "` + leafPath + `":{"ca":null,"deriver":null,"narHash":"` + leafSRI + `","narSize":1616,"references":[]}}`},
		{"versioned object, base names and hash objects", `{
 "kccl8vci2l6va686lvfhzab0mv66yfmy-via-mid":{"version":2,"storeDir":"/nix/store","deriver":"mspa1sl5x48kcpcb4j61hfy7hwp1xkr2-via-mid.drv",
   "narHash":{"algorithm":"sha256","format":"base64","hash":"` + strings.TrimPrefix(midSRI, "sha256-") + `"},"narSize":800,"references":["phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-via-leaf"]},
 "phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-via-leaf":{"version":2,"narHash":{"algorithm":"sha256","format":"base16","hash":"` + leafHash.Base16() + `"},"narSize":1616,"references":[]}}`},
	}
	want := []PathInfo{
		{Path: midPath, NarHash: midHash, NarSize: 800, References: []string{leafPath}, Deriver: midDrv},
		{Path: leafPath, NarHash: leafHash, NarSize: 1616},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePathInfoJSON([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d paths, want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.Path != w.Path || g.NarHash != w.NarHash || g.NarSize != w.NarSize || g.Deriver != w.Deriver ||
					strings.Join(g.References, " ") != strings.Join(w.References, " ") {
					t.Errorf("path %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestParsePathInfoJSONRefuses(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"invalid in 2.8", `[{"path":"` + leafPath + `","valid":false}]`, "not valid"},
		{"invalid in 2.19+", `{"` + leafPath + `":null}`, "not valid"},
		{"no narHash", `[{"path":"` + leafPath + `","narSize":1}]`, "narHash: missing"},
		{"bad narHash", `[{"path":"` + leafPath + `","narHash":"md5:abc","narSize":1}]`, "narHash"},
		{"no narSize", `[{"path":"` + leafPath + `","narHash":"` + leafSRI + `"}]`, "no narSize"},
		{"path outside store", `[{"path":"/etc/passwd","narHash":"` + leafSRI + `","narSize":1}]`, "not in /nix/store"},
		{"traversal in reference", `[{"path":"` + leafPath + `","narHash":"` + leafSRI + `","narSize":1,"references":["/nix/store/../../etc"]}]`, "reference"},
		{"other store dir", `{"x":{"storeDir":"/gnu/store","narHash":"` + leafSRI + `","narSize":1}}`, "store directory"},
		{"listed twice", `[{"path":"` + leafPath + `","narHash":"` + leafSRI + `","narSize":1},{"path":"` + leafPath + `","narHash":"` + leafSRI + `","narSize":1}]`, "twice"},
		{"not JSON", `error: oops`, "want an array or an object"},
		{"sha1 object", `{"` + leafPath + `":{"narHash":{"algorithm":"sha1","format":"base16","hash":"00"},"narSize":1}}`, "want sha256"},
	}
	for _, tt := range tests {
		_, err := ParsePathInfoJSON([]byte(tt.json))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}

func TestCheckStorePath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{leafPath, true},
		{midDrv, true},
		{"/nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-a+b_c.d?e=f", true},
		{"/nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz", false},
		{"/nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-", false},
		{"/nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-..", false},
		{"/nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-a/b", false},
		{"/nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-a b", false},
		{"/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x", false},
		{"/nix/store/../phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-x", false},
		{"/nix/storex/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-x", false},
		{"nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-x", false},
		{"/nix/store/phasnnbiwp55cdl9j0gkl7jp1l2gjpcz-" + strings.Repeat("x", 212), false},
	}
	for _, tt := range tests {
		err := CheckStorePath(tt.path)
		if (err == nil) != tt.ok {
			t.Errorf("CheckStorePath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
		}
	}
}

func TestRegistrationRoundTrip(t *testing.T) {
	infos := []PathInfo{
		{Path: midPath, NarHash: mustHash(t, midSRI), NarSize: 800, References: []string{leafPath}, Deriver: midDrv},
		{Path: leafPath, NarHash: mustHash(t, leafSRI), NarSize: 1616},
	}
	text, err := Registration(infos)
	if err != nil {
		t.Fatal(err)
	}
	want := midPath + "\n" + infos[0].NarHash.Base16() + "\n800\n" + midDrv + "\n1\n" + leafPath + "\n" +
		leafPath + "\n" + infos[1].NarHash.Base16() + "\n1616\n\n0\n"
	if text != want {
		t.Errorf("Registration =\n%s\nwant\n%s", text, want)
	}
	back, err := ParseRegistration(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[0].Path != midPath || back[0].NarHash != infos[0].NarHash || back[0].Deriver != midDrv ||
		len(back[0].References) != 1 || back[1].NarSize != 1616 || back[1].Deriver != "" {
		t.Errorf("ParseRegistration = %+v, want %+v", back, infos)
	}
	for _, bad := range []string{midPath + "\nzz\n800\n\n0\n", midPath + "\n" + infos[0].NarHash.Base16() + "\n800\n\n2\n" + leafPath + "\n"} {
		if _, err := ParseRegistration(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseRegistration(%q) succeeded, want an error", bad)
		}
	}
	if _, err := Registration([]PathInfo{{Path: "/tmp/x"}}); err == nil {
		t.Error("Registration of a non-store path succeeded, want an error")
	}
}
