// Package elfdeps finds the shared libraries a dynamically linked ELF
// program needs, the way the dynamic loader would: DT_NEEDED entries are
// looked up through DT_RPATH/DT_RUNPATH, then the directories of
// /etc/ld.so.conf and the default system directories, recursively.
// Like mkinitramfs's copy_exec, the result lets an image builder copy a
// binary together with everything it needs to run.
package elfdeps

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Resolver looks libraries up in a fixed list of directories.
type Resolver struct {
	// Dirs are searched in order after a binary's own RPATH/RUNPATH.
	Dirs []string
}

// defaultDirs are the default search directories of a Debian x86_64 system
// after those named in /etc/ld.so.conf.
func defaultDirs() []string {
	return []string{
		"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
		"/lib64", "/usr/lib64", "/lib", "/usr/lib",
	}
}

// NewResolver returns a Resolver for the host: directories from
// /etc/ld.so.conf (with its include lines), then the default directories.
func NewResolver() *Resolver {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	readLdSoConf("/etc/ld.so.conf", add, 0)
	for _, d := range defaultDirs() {
		add(d)
	}
	return &Resolver{Dirs: dirs}
}

func readLdSoConf(file string, add func(string), depth int) {
	if depth > 8 {
		return
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "include"); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "\t")) {
			pattern := strings.TrimSpace(rest)
			if !filepath.IsAbs(pattern) {
				pattern = filepath.Join(filepath.Dir(file), pattern)
			}
			matches, _ := filepath.Glob(pattern)
			sort.Strings(matches)
			for _, m := range matches {
				readLdSoConf(m, add, depth+1)
			}
			continue
		}
		add(line)
	}
}

type binInfo struct {
	class    elf.Class
	machine  elf.Machine
	interp   string
	needed   []string
	runpaths []string
}

func inspect(path string) (*binInfo, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	info := &binInfo{class: f.Class, machine: f.Machine}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			buf := make([]byte, p.Filesz)
			if _, err := p.ReadAt(buf, 0); err != nil {
				return nil, fmt.Errorf("read ELF %s: interpreter: %w", path, err)
			}
			info.interp = strings.TrimRight(string(buf), "\x00")
		}
	}
	if f.Section(".dynamic") == nil {
		return info, nil // static
	}
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: DT_NEEDED: %w", path, err)
	}
	info.needed = needed
	origin := filepath.Dir(path)
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, err := f.DynString(tag)
		if err != nil {
			continue
		}
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				d = strings.ReplaceAll(d, "$ORIGIN", origin)
				d = strings.ReplaceAll(d, "${ORIGIN}", origin)
				if d != "" {
					info.runpaths = append(info.runpaths, d)
				}
			}
		}
	}
	return info, nil
}

// IsDynamic reports whether the ELF file at path needs a dynamic loader.
func IsDynamic(path string) (bool, error) {
	info, err := inspect(path)
	if err != nil {
		return false, err
	}
	return info.interp != "" || len(info.needed) > 0, nil
}

func (r *Resolver) find(lib string, want *binInfo, runpaths []string) (string, error) {
	if strings.Contains(lib, "/") {
		return lib, nil
	}
	for _, dir := range append(append([]string{}, runpaths...), r.Dirs...) {
		cand := filepath.Join(dir, lib)
		if _, err := os.Stat(cand); err != nil {
			continue
		}
		info, err := inspect(cand)
		if err != nil || info.class != want.class || info.machine != want.machine {
			continue // wrong architecture or not ELF: the loader skips these too
		}
		return cand, nil
	}
	return "", fmt.Errorf("library %s not found in %s", lib, strings.Join(append(runpaths, r.Dirs...), ":"))
}

// Collect returns the host paths of everything the given ELF files need at
// run time, the files themselves excluded: the program interpreter and all
// shared libraries, transitively, sorted. Paths are as the loader finds
// them (for example /lib/x86_64-linux-gnu/libc.so.6); symlinks are not
// resolved, so a library keeps its soname path. Static binaries need
// nothing. Modules loaded with dlopen (PAM, NSS, plugins) can be passed as
// extra roots.
func (r *Resolver) Collect(roots ...string) ([]string, error) {
	if len(roots) == 0 {
		return nil, errors.New("elfdeps: no files given")
	}
	seen := map[string]bool{}
	result := map[string]bool{}
	type item struct {
		path string
		root bool
	}
	queue := []item{}
	for _, p := range roots {
		queue = append(queue, item{p, true})
	}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if seen[it.path] {
			continue
		}
		seen[it.path] = true
		info, err := inspect(it.path)
		if err != nil {
			return nil, fmt.Errorf("elfdeps: %w", err)
		}
		if !it.root {
			result[it.path] = true
		}
		if info.interp != "" && !seen[info.interp] {
			queue = append(queue, item{info.interp, false})
		}
		for _, lib := range info.needed {
			p, err := r.find(lib, info, info.runpaths)
			if err != nil {
				return nil, fmt.Errorf("elfdeps: %s: %w", it.path, err)
			}
			queue = append(queue, item{p, false})
		}
	}
	for _, p := range roots {
		delete(result, p)
	}
	out := make([]string, 0, len(result))
	for p := range result {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}
