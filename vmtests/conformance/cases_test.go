package conformance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/disko"
)

// layoutCase is one layout file mapped onto the VM's disks.
type layoutCase struct {
	Name      string
	File      string
	Disks     []string // disk attr names, sorted; disk i is /dev/vd<a+i>
	NeedBytes int64    // rough upper bound of the fixed sizes a disk must hold
	Layout    *disko.Layout
	Err       error  // the file cannot be read or parsed
	Skip      string // why it cannot run in this VM ("" = it can)
}

// loadCases reads every *.json layout of the directories (CASE.resolved.json
// files, the same layouts with defaults filled in, are left out).
func loadCases(dirs []string) ([]*layoutCase, error) {
	var out []*layoutCase
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		sort.Strings(files)
		for _, f := range files {
			if strings.HasSuffix(f, ".resolved.json") {
				continue
			}
			out = append(out, loadCase(f))
		}
	}
	return out, nil
}

func loadCase(file string) *layoutCase {
	c := &layoutCase{Name: strings.TrimSuffix(filepath.Base(file), ".json"), File: file}
	data, err := os.ReadFile(file)
	if err != nil {
		c.Err = fmt.Errorf("read %s: %w", file, err)
		return c
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		c.Err = fmt.Errorf("%s: %w", file, err)
		return c
	}
	devices := unwrapDevices(v)
	disks, _ := devices["disk"].(map[string]any)
	for name := range disks {
		c.Disks = append(c.Disks, name)
	}
	sort.Strings(c.Disks)
	for i, name := range c.Disks {
		d, ok := disks[name].(map[string]any)
		if !ok {
			continue
		}
		d["device"] = vmDisk(i)
	}
	c.NeedBytes = fixedBytes(devices) + 64<<20
	mapped, err := json.Marshal(devices)
	if err != nil {
		c.Err = fmt.Errorf("%s: %w", file, err)
		return c
	}
	if c.Layout, err = disko.Parse(mapped); err != nil {
		c.Err = fmt.Errorf("disko.Parse: %w", err)
	}
	return c
}

// unwrapDevices accepts disko.devices itself, {"devices": …} or
// {"disko": {"devices": …}}.
func unwrapDevices(v any) map[string]any {
	m, _ := v.(map[string]any)
	if d, ok := m["disko"].(map[string]any); ok {
		m = d
	}
	if d, ok := m["devices"].(map[string]any); ok && len(m) == 1 {
		m = d
	}
	return m
}

func vmDisk(i int) string {
	if i < 26 {
		return "/dev/vd" + string(rune('a'+i))
	}
	return fmt.Sprintf("/dev/vd%c%c", 'a'+i/26-1, 'a'+i%26)
}

var sizeRe = regexp.MustCompile(`^[+-]?([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(?:i?B)?$`)

// parseBytes reads a fixed size as sgdisk, lvcreate and disko take it
// (binary units); ok is false for percentages and anything else.
func parseBytes(s string) (int64, bool) {
	m := sizeRe.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}[m[2]]
	if m[2] == "" && !strings.ContainsAny(s, "bB") {
		// sgdisk reads a bare number as sectors; lvcreate as MiB. Either
		// way a MiB per unit bounds it.
		mult = 1 << 20
	}
	return int64(f * mult), true
}

// fixedBytes adds up every fixed size in the layout (partition sizes and
// ends, LV, zvol and swap file sizes): an upper bound of what one disk must
// hold, whatever the layout puts where.
func fixedBytes(v any) int64 {
	var sum int64
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "size" || k == "end") {
				if n, ok := parseBytes(s); ok {
					sum += n
				}
				continue
			}
			sum += fixedBytes(e)
		}
	case []any:
		for _, e := range x {
			sum += fixedBytes(e)
		}
	}
	return sum
}

// walk visits c and every content nested in it.
func walk(c disko.Content, fn func(disko.Content)) {
	if c == nil {
		return
	}
	fn(c)
	switch x := c.(type) {
	case *disko.GPT:
		for _, p := range x.Partitions {
			walk(p.Content, fn)
		}
	case *disko.Table:
		for _, p := range x.Partitions {
			walk(p.Content, fn)
		}
	case *disko.LUKS:
		walk(x.Content, fn)
	}
}

// contents visits every content of the layout.
func contents(l *disko.Layout, fn func(disko.Content)) {
	for _, d := range l.Disks {
		walk(d.Content, fn)
	}
	for _, m := range l.MDArrays {
		walk(m.Content, fn)
	}
	for _, v := range l.VGs {
		for _, lv := range v.LVs {
			walk(lv.Content, fn)
		}
	}
	for _, z := range l.Zpools {
		for _, ds := range z.Datasets {
			if zv, ok := ds.(*disko.ZFSVolume); ok {
				walk(zv.Content, fn)
			}
		}
	}
}

// keyFiles lists the key and password files the layout reads on the host.
func keyFiles(l *disko.Layout) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		p = strings.TrimPrefix(p, "file://")
		if p != "" && strings.HasPrefix(p, "/") && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	contents(l, func(c disko.Content) {
		if x, ok := c.(*disko.LUKS); ok {
			for _, p := range []*string{x.KeyFile, x.PasswordFile} {
				if p != nil {
					add(*p)
				}
			}
			if s, ok := x.Settings["keyFile"].(string); ok {
				add(s)
			}
			for _, p := range x.AdditionalKeyFiles {
				add(p)
			}
		}
	})
	for _, b := range l.Bcachefs {
		if b.PasswordFile != nil {
			add(*b.PasswordFile)
		}
	}
	for _, z := range l.Zpools {
		for _, m := range []map[string]string{z.Options, z.RootFsOptions} {
			if strings.HasPrefix(m["keylocation"], "file://") {
				add(m["keylocation"])
			}
		}
		for _, ds := range z.Datasets {
			if fs, ok := ds.(*disko.ZFSFS); ok && strings.HasPrefix(fs.Options["keylocation"], "file://") {
				add(fs.Options["keylocation"])
			}
		}
	}
	sort.Strings(out)
	return out
}

// interactive reports a LUKS container that asks for its passphrase on a
// terminal (no key file, no password file).
func interactive(l *disko.Layout) string {
	why := ""
	contents(l, func(c disko.Content) {
		if x, ok := c.(*disko.LUKS); ok && why == "" {
			_, hasKey := x.Settings["keyFile"].(string)
			if x.KeyFile == nil && x.PasswordFile == nil && !hasKey {
				why = "LUKS " + x.Name + " asks for its passphrase on a terminal"
			}
		}
	})
	return why
}
