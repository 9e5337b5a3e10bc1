package install

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// ProfilesDir is where system profiles live, relative to the target root.
const ProfilesDir = "nix/var/nix/profiles"

// ProfileLink is one symlink to create: Path (relative to the target root)
// pointing at Target.
type ProfileLink struct {
	Path   string
	Target string
}

// ProfilePlan is what `nix-env -p /nix/var/nix/profiles/<name> --set <path>`
// does to the profile directory.
type ProfilePlan struct {
	Generation int           // the generation that will be current
	Links      []ProfileLink // in order; empty when nothing changes
}

// PlanProfile plans setting profile name (e.g. "system") to storePath, given
// the existing generations (number → store path they point to), as nix-env
// --set does: when the newest generation already points to storePath it is
// reused, otherwise generation newest+1 is created as
// "<name>-<n>-link" → storePath; then "<name>" → "<name>-<n>-link" (relative).
func PlanProfile(name string, generations map[int]string, storePath string) (ProfilePlan, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return ProfilePlan{}, fmt.Errorf("profile name %q: want a plain file name", name)
	}
	if err := nix.CheckStorePath(storePath); err != nil {
		return ProfilePlan{}, fmt.Errorf("profile %s: %w", name, err)
	}
	newest := 0
	for n := range generations {
		if n <= 0 {
			return ProfilePlan{}, fmt.Errorf("profile %s: generation %d", name, n)
		}
		newest = max(newest, n)
	}
	plan := ProfilePlan{Generation: newest}
	if newest == 0 || generations[newest] != storePath {
		plan.Generation = newest + 1
		plan.Links = append(plan.Links, ProfileLink{
			Path:   filepath.Join(ProfilesDir, genLinkName(name, plan.Generation)),
			Target: storePath,
		})
	}
	plan.Links = append(plan.Links, ProfileLink{
		Path:   filepath.Join(ProfilesDir, name),
		Target: genLinkName(name, plan.Generation),
	})
	return plan, nil
}

func genLinkName(name string, n int) string { return fmt.Sprintf("%s-%d-link", name, n) }

// ReadGenerations lists the generations of profile name under root:
// <root>/nix/var/nix/profiles/<name>-<n>-link → store path.
func ReadGenerations(root, name string) (map[int]string, error) {
	dir := filepath.Join(root, ProfilesDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[int]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	gens := map[int]string{}
	for _, e := range entries {
		mid, ok := strings.CutPrefix(e.Name(), name+"-")
		if !ok {
			continue
		}
		num, ok := strings.CutSuffix(mid, "-link")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n <= 0 {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read profiles: %w", err)
		}
		gens[n] = target
	}
	return gens, nil
}

// ApplyProfilePlan creates the plan's links under root, each atomically
// (a temporary symlink renamed over the old one).
func ApplyProfilePlan(root string, plan ProfilePlan) error {
	for _, l := range plan.Links {
		p := filepath.Join(root, l.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		var r [6]byte
		rand.Read(r[:])
		tmp := filepath.Join(filepath.Dir(p), tmpPrefix+filepath.Base(p)+"-"+hex.EncodeToString(r[:]))
		if err := os.Symlink(l.Target, tmp); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("profile: %w", err)
		}
	}
	if len(plan.Links) > 0 {
		return fsyncDir(filepath.Join(root, ProfilesDir))
	}
	return nil
}
