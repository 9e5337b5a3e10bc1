// Package kmod selects Linux kernel modules with their dependencies from a
// module tree (/lib/modules/<kver>) using its modules.dep, and writes a
// modules.dep for the subset copied into an image.
package kmod

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Index is a parsed modules.dep of one kernel.
type Index struct {
	// Dir is the module directory, e.g. /lib/modules/6.1.0-56-cloud-amd64.
	Dir string
	// deps maps a module's relative path to its dependencies' paths.
	deps map[string][]string
	// byName maps a normalised module name (dashes as underscores) to its path.
	byName map[string]string
	// builtin holds normalised names of modules built into the kernel.
	builtin map[string]bool
}

// Name returns the normalised module name of a path or name:
// "kernel/drivers/md/dm-crypt.ko" and "dm-crypt" both give "dm_crypt".
func Name(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// Load reads dir/modules.dep (and modules.builtin when present).
func Load(dir string) (*Index, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	idx := &Index{Dir: dir, deps: map[string][]string{}, byName: map[string]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		mod, rest, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("kmod: %s/modules.dep:%d: no colon in %q", dir, line, text)
		}
		idx.deps[mod] = strings.Fields(rest)
		idx.byName[Name(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kmod: read %s/modules.dep: %w", dir, err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(data)) {
			idx.builtin[Name(l)] = true
		}
	}
	return idx, nil
}

// Path returns the relative path of the named module ("dm-crypt" or
// "dm_crypt"), or "" with ok=false.
func (x *Index) Path(name string) (string, bool) {
	p, ok := x.byName[Name(name)]
	return p, ok
}

// Builtin reports whether the named module is built into the kernel.
func (x *Index) Builtin(name string) bool { return x.builtin[Name(name)] }

// Resolve returns the relative paths of the named modules and everything
// they depend on, ordered so that each module comes after its dependencies
// (the order insmod needs). Names of built-in modules are skipped; unknown
// names are an error.
func (x *Index) Resolve(names ...string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(p string, chain []string) error
	visit = func(p string, chain []string) error {
		switch state[p] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("kmod: dependency cycle: %s", strings.Join(append(chain, p), " -> "))
		}
		deps, ok := x.deps[p]
		if !ok {
			return fmt.Errorf("kmod: %s: not in %s/modules.dep", p, x.Dir)
		}
		state[p] = 1
		// modules.dep lists dependencies in load-reverse order; visit them
		// all first, whatever their order.
		for _, d := range deps {
			if err := visit(d, append(chain, p)); err != nil {
				return err
			}
		}
		state[p] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		p, ok := x.Path(n)
		if !ok {
			if x.Builtin(n) {
				continue
			}
			return nil, fmt.Errorf("kmod: module %q not found in %s/modules.dep", n, x.Dir)
		}
		if err := visit(p, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// DepFile renders a modules.dep for exactly the given modules (relative
// paths as returned by Resolve). Dependencies are listed as in the original.
func (x *Index) DepFile(mods []string) ([]byte, error) {
	sorted := append([]string(nil), mods...)
	sort.Strings(sorted)
	in := map[string]bool{}
	for _, m := range sorted {
		in[m] = true
	}
	var b bytes.Buffer
	for _, m := range sorted {
		deps, ok := x.deps[m]
		if !ok {
			return nil, fmt.Errorf("kmod: %s: not in %s/modules.dep", m, x.Dir)
		}
		for _, d := range deps {
			if !in[d] {
				return nil, fmt.Errorf("kmod: %s needs %s, which is not in the set", m, d)
			}
		}
		b.WriteString(m + ":")
		for _, d := range deps {
			b.WriteString(" " + d)
		}
		b.WriteString("\n")
	}
	return b.Bytes(), nil
}

// Depmod runs the host's `depmod -b root kver`, which regenerates the
// binary indexes (modules.dep.bin, modules.alias.bin, …) that kmod's
// modprobe reads, for a module tree staged under root/lib/modules/kver.
func Depmod(ctx context.Context, root, kver string) error {
	bin, err := exec.LookPath("depmod")
	if err != nil {
		for _, p := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("kmod: depmod not found (install kmod): %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, "-b", root, kver).CombinedOutput()
	if err != nil {
		return fmt.Errorf("depmod -b %s %s: %w: %s", root, kver, err, bytes.TrimSpace(out))
	}
	return nil
}
