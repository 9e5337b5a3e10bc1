package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPlanProfile(t *testing.T) {
	a, b := fakePath("system-a"), fakePath("system-b")
	tests := []struct {
		name string
		gens map[int]string
		to   string
		want ProfilePlan
	}{
		{"first install", nil, a, ProfilePlan{Generation: 1, Links: []ProfileLink{
			{"nix/var/nix/profiles/system-1-link", a}, {"nix/var/nix/profiles/system", "system-1-link"}}}},
		{"same as newest: reuse", map[int]string{1: b, 2: a}, a, ProfilePlan{Generation: 2, Links: []ProfileLink{
			{"nix/var/nix/profiles/system", "system-2-link"}}}},
		{"new system after gaps", map[int]string{1: a, 7: a}, b, ProfilePlan{Generation: 8, Links: []ProfileLink{
			{"nix/var/nix/profiles/system-8-link", b}, {"nix/var/nix/profiles/system", "system-8-link"}}}},
		{"older generation matches, still new", map[int]string{1: a, 2: b}, a, ProfilePlan{Generation: 3, Links: []ProfileLink{
			{"nix/var/nix/profiles/system-3-link", a}, {"nix/var/nix/profiles/system", "system-3-link"}}}},
	}
	for _, tt := range tests {
		got, err := PlanProfile("system", tt.gens, tt.to)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: plan %+v, want %+v", tt.name, got, tt.want)
		}
	}
	for _, bad := range []struct{ name, to string }{{"../x", a}, {"", a}, {"system", "/etc"}} {
		if _, err := PlanProfile(bad.name, nil, bad.to); err == nil {
			t.Errorf("PlanProfile(%q, %q) succeeded, want an error", bad.name, bad.to)
		}
	}
}

// TestProfileMatchesNixEnv applies our plan and nix-env --set to two roots
// and compares the resulting profile directories.
func TestProfileMatchesNixEnv(t *testing.T) {
	if _, err := exec.LookPath("nix-env"); err != nil {
		t.Skip("nix-env not installed (apt-get install nix-bin)")
	}
	_, infos := nixtestClosure(t)
	ours, theirs := t.TempDir(), t.TempDir()
	for _, step := range []string{infos[0].Path, infos[0].Path, infos[1].Path} {
		gens, err := ReadGenerations(ours, "system")
		if err != nil {
			t.Fatal(err)
		}
		plan, err := PlanProfile("system", gens, step)
		if err != nil {
			t.Fatal(err)
		}
		if err := ApplyProfilePlan(ours, plan); err != nil {
			t.Fatal(err)
		}
		// nix-env needs the path valid in its store: copy it there first.
		if out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "copy", "--no-check-sigs", "--to", theirs, step).CombinedOutput(); err != nil {
			t.Fatalf("nix copy: %v: %s", err, out)
		}
		// -p is a real path, not one inside the chroot store: point it into theirs.
		cmd := exec.Command("nix-env", "--store", theirs, "-p", filepath.Join(theirs, ProfilesDir, "system"), "--set", step)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("nix-env --store --set (chroot store) not usable here: %v: %s", err, out)
		}
	}
	if got, want := linksIn(t, filepath.Join(ours, ProfilesDir)), linksIn(t, filepath.Join(theirs, ProfilesDir)); !reflect.DeepEqual(got, want) {
		t.Errorf("profile links\n ours   %v\n nix-env %v", got, want)
	}
}

func linksIn(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(e.Name(), "system") {
			out[e.Name()] = target
		}
	}
	return out
}
