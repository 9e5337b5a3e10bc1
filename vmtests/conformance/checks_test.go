package conformance

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// userspaceOpts never show in /proc/mounts (mount(8), systemd and NixOS
// read them); hiddenDefaults are kernel defaults /proc/mounts leaves out.
var (
	userspaceOpts  = map[string]bool{"defaults": true, "auto": true, "noauto": true, "nofail": true, "user": true, "users": true, "nouser": true, "owner": true, "group": true, "_netdev": true, "zfsutil": true}
	hiddenDefaults = map[string]bool{"rw": true, "async": true, "exec": true, "suid": true, "dev": true, "atime": true, "data=ordered": true, "barrier": true, "barrier=1": true, "user_xattr": true, "acl": true}
)

// vfsFlags are per-mount flags; btrfs applies its other options per
// filesystem, from the first mount of it (btrfs(5): "most mount options
// apply to the whole filesystem"), so a later subvolume mount may show
// other values: that is a note, not a failure.
var vfsFlags = map[string]bool{"ro": true, "noatime": true, "relatime": true, "strictatime": true, "nodiratime": true,
	"nodev": true, "nosuid": true, "noexec": true}

// optionProblems compares declared mount options with the ones the kernel
// shows for the mount.
func optionProblems(fstype string, declared, got []string) (problems, notes []string) {
	for _, p := range optionCheck(declared, got) {
		k, _, _ := strings.Cut(p.opt, "=")
		if fstype == "btrfs" && !vfsFlags[p.opt] && k != "subvol" {
			notes = append(notes, p.msg+" (btrfs: filesystem-wide, set by its first mount)")
		} else {
			problems = append(problems, p.msg)
		}
	}
	return problems, notes
}

type optProblem struct{ opt, msg string }

func optionCheck(declared, got []string) []optProblem {
	shown := map[string][]string{}
	for _, o := range got {
		k, v, _ := strings.Cut(o, "=")
		shown[k] = append(shown[k], v)
	}
	octal := func(s string) (int64, bool) {
		n, err := strconv.ParseInt(s, 8, 64)
		return n, err == nil
	}
	var out []optProblem
	add := func(o, format string, a ...any) { out = append(out, optProblem{o, fmt.Sprintf(format, a...)}) }
	for _, o := range declared {
		k, v, hasV := strings.Cut(o, "=")
		switch {
		case userspaceOpts[o], strings.HasPrefix(strings.ToLower(o), "x-"), strings.HasPrefix(o, "comment="), hiddenDefaults[o]:
			continue
		case k == "umask" && hasV:
			// vfat shows a umask as fmask and dmask.
			want, _ := octal(v)
			for _, mk := range []string{"fmask", "dmask"} {
				vals := shown[mk]
				if len(vals) == 0 {
					add(o, "option %s: no %s shown", o, mk)
					continue
				}
				if g, ok := octal(vals[0]); !ok || g != want {
					add(o, "option %s: %s=%s shown", o, mk, vals[0])
				}
			}
			continue
		}
		vals, ok := shown[k]
		if !ok {
			add(o, "option %s not in effect (mounted with %s)", o, strings.Join(got, ","))
			continue
		}
		if !hasV {
			continue
		}
		match := false
		for _, g := range vals {
			switch k {
			case "subvol":
				match = strings.Trim(g, "/") == strings.Trim(v, "/")
			case "compress", "compress-force":
				match = g == v || strings.HasPrefix(g, v+":")
			case "size", "nr_inodes", "nr_blocks":
				match = true // shown in other units
			case "mode", "fmask", "dmask", "umask":
				a, ok1 := octal(g)
				b, ok2 := octal(v)
				match = ok1 && ok2 && a == b
			default:
				match = g == v
			}
			if match {
				break
			}
		}
		if !match {
			add(o, "option %s shown as %s=%s", o, k, strings.Join(vals, ","))
		}
	}
	return out
}

// exactBytes reads a size with a unit suffix (sgdisk and lvcreate: binary).
func exactBytes(s string) (int64, bool) {
	if s == "" || strings.HasSuffix(s, "%") || strings.Contains(s, "%") {
		return 0, false
	}
	last := strings.ToUpper(s[len(s)-1:])
	if !strings.Contains("KMGTP", last) {
		return 0, false
	}
	return parseBytes(s)
}

func attrMask(bits []int) string {
	var m uint64
	for _, b := range bits {
		m |= 1 << uint(b)
	}
	return fmt.Sprintf("%016X", m)
}

// checkMounted compares a mounted layout with the expectation and returns
// every problem, plus the identities (UUIDs) of what it found.
func (e *expect) checkMounted(s *state, keys bool) (problems, notes []string, ids map[string]string) {
	ids = map[string]string{}
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	dev := func(p string) []string {
		if d, ok := s.devs[strconv.Itoa(e.devID[p])]; ok && d[0] != "" {
			return d
		}
		return nil
	}
	for i, m := range e.mounts {
		t := e.target(m.mp)
		g, ok := s.mounts[t]
		if !ok {
			bad("%s (%s) not mounted", t, m.fs.Device)
			continue
		}
		if want := m.fs.FSType; g.fstype != want && !(want == "vfat" && g.fstype == "msdos") {
			bad("%s: type %s, want %s", t, g.fstype, want)
		}
		probs, ns := optionProblems(g.fstype, m.fs.Options, g.opts)
		for _, p := range probs {
			bad("%s: %s", t, p)
		}
		for _, n := range ns {
			notes = append(notes, t+": "+n)
		}
		if !m.block {
			continue
		}
		d := dev(m.fs.Device)
		src := s.sources[strconv.Itoa(i)]
		switch {
		case d == nil:
			bad("%s: declared device %s not found", t, m.fs.Device)
		case len(src) == 2 && src[1] != d[3]:
			bad("%s: mounted from %s (UUID %q), want %s = %s (UUID %q)", t, src[0], src[1], m.fs.Device, d[0], d[3])
		case len(src) == 2:
			ids["fs "+m.mp] = src[1]
		}
		if m.marker {
			ids["marker "+m.mp] = s.markers[strconv.Itoa(i)]
		}
	}
	for _, p := range e.swaps {
		d := dev(p)
		switch {
		case d == nil:
			bad("swap %s not found", p)
		case d[2] != "swap":
			bad("swap %s (%s) has type %q", p, d[0], d[2])
		case !s.swaps[d[1]] && !s.swaps[d[0]]:
			bad("swap %s (%s) not active", p, d[0])
		default:
			ids["swap "+p] = d[3]
		}
	}
	for _, p := range e.swapRnd {
		if dev(p) == nil {
			bad("random-encryption swap %s not found", p)
		}
	}
	for i, f := range e.files {
		if got := s.swapType[strconv.Itoa(i)]; got != "swap" {
			bad("swap file %s: type %q, want swap", e.target(f), got)
		}
	}
	for i, l := range e.luks {
		g := s.luks[strconv.Itoa(i)]
		d := dev(l.Device)
		switch {
		case len(g) != 4 || d == nil:
			bad("LUKS %s: device %s not found", l.Name, l.Device)
			continue
		case g[0] != "1":
			bad("LUKS %s: %s (%s) is not LUKS", l.Name, l.Device, d[0])
		case g[2] != "1":
			bad("LUKS %s: not open", l.Name)
		case g[3] != d[1]:
			bad("LUKS %s: open on %s, want %s (%s)", l.Name, g[3], l.Device, d[1])
		}
		ids["luks "+l.Name] = g[1]
		if keys {
			for j, k := range l.AdditionalKeyFiles {
				if got := s.keys[fmt.Sprintf("%d#%d", i, j)]; got != "ok" {
					bad("LUKS %s: additional key file %s does not unlock it", l.Name, k)
				}
			}
		}
	}
	for _, v := range e.vgs {
		g, ok := s.vgs[v.Name]
		if !ok {
			bad("VG %s missing", v.Name)
			continue
		}
		ids["vg "+v.Name] = g[0]
		extent, _ := strconv.ParseInt(g[1], 10, 64)
		for _, lv := range v.LVs {
			l, ok := s.lvs[v.Name+"/"+lv.Name]
			if !ok {
				bad("LV %s/%s missing", v.Name, lv.Name)
				continue
			}
			ids["lv "+v.Name+"/"+lv.Name] = l[2]
			want := "linear"
			if lv.LVMType != nil {
				want = *lv.LVMType
			}
			seg := l[1]
			switch {
			case want == "thinlv" && seg == "thin", want == seg, want == "linear" && seg == "striped",
				want == "raid0" && seg == "raid0_meta", want == "mirror" && seg == "raid1":
			default:
				bad("LV %s/%s: segment type %s, want %s", v.Name, lv.Name, seg, want)
			}
			if lv.Pool != nil && l[4] != *lv.Pool {
				bad("LV %s/%s: pool %q, want %s", v.Name, lv.Name, l[4], *lv.Pool)
			}
			if len(l[3]) < 5 || l[3][4] != 'a' {
				bad("LV %s/%s not active (attr %s)", v.Name, lv.Name, l[3])
			}
			if n, ok := exactBytes(lv.Size); ok {
				got, _ := strconv.ParseInt(l[0], 10, 64)
				if got < n || got > n+4*extent {
					bad("LV %s/%s: %d bytes, want %s (%d, extent %d)", v.Name, lv.Name, got, lv.Size, n, extent)
				}
			}
		}
	}
	for _, m := range e.mds {
		g := s.md(m.Name)
		if g == nil {
			bad("md array %s missing", m.Name)
			continue
		}
		ids["md "+m.Name] = g["MD_UUID"]
		if want := fmt.Sprintf("raid%d", m.Level); g["MD_LEVEL"] != want {
			bad("md %s: level %s, want %s", m.Name, g["MD_LEVEL"], want)
		}
		if m.Metadata != "" && m.Metadata != "default" && g["MD_METADATA"] != m.Metadata {
			bad("md %s: metadata %s, want %s", m.Name, g["MD_METADATA"], m.Metadata)
		}
		if want := e.members[m.Attr]; want > 0 && g["MD_DEVICES"] != strconv.Itoa(want) {
			bad("md %s: %s devices, want %d", m.Name, g["MD_DEVICES"], want)
		}
	}
	for i, g := range e.gpts {
		for _, p := range g.Partitions {
			got := s.parts[fmt.Sprintf("%d#%d", i, p.Index)]
			where := fmt.Sprintf("partition %d (%s) of %s", p.Index, p.Attr, g.Device)
			if got == nil || got["missing"] != "" || got["Partition GUID code"] == "" {
				bad("%s missing", where)
				continue
			}
			ids["part "+g.Device+"#"+strconv.Itoa(p.Index)] = got["Partition unique GUID"]
			if n := strings.Trim(got["Partition name"], "'"); n != p.Label {
				bad("%s: name %q, want %q", where, n, p.Label)
			}
			guid, name, _ := strings.Cut(got["Partition GUID code"], " ")
			name = strings.Trim(name, "()")
			if strings.Contains(p.Type, "-") {
				if !strings.EqualFold(guid, p.Type) {
					bad("%s: type %s, want %s", where, guid, p.Type)
				}
			} else if want, ok := s.codes[strings.ToUpper(p.Type)]; !ok {
				bad("%s: sgdisk knows no type code %s", where, p.Type)
			} else if !strings.HasPrefix(name, want) {
				bad("%s: type %s (%s), want %s (%s)", where, guid, name, p.Type, want)
			}
			if p.UUID != nil && !strings.EqualFold(got["Partition unique GUID"], *p.UUID) {
				bad("%s: GUID %s, want %s", where, got["Partition unique GUID"], *p.UUID)
			}
			if a := got["Attribute flags"]; !strings.EqualFold(a, attrMask(p.Attributes)) {
				bad("%s: attribute flags %s, want %s (bits %v)", where, a, attrMask(p.Attributes), p.Attributes)
			}
			if n, ok := exactBytes(p.Size); ok && p.End == "+"+p.Size {
				sectors, _ := strconv.ParseInt(strings.Fields(got["Partition size"] + " 0")[0], 10, 64)
				if got := sectors * 512; got < n-1<<20 || got > n {
					bad("%s: %d bytes, want %s (%d)", where, got, p.Size, n)
				}
			}
		}
	}
	for _, t := range e.tables {
		for _, p := range t.Partitions {
			if dev(p.Device) == nil {
				bad("partition %d of %s (%s) missing", p.Index, t.Device, p.Device)
			}
		}
	}
	for i, x := range e.btrfs {
		got := s.subvols[strconv.Itoa(i)]
		if err := s.btrfsErr[strconv.Itoa(i)]; err != "" {
			bad("btrfs on %s: mount its top level: %s", x.Device, err)
			continue
		}
		for _, sv := range x.Subvolumes {
			if !got[strings.Trim(sv.Name, "/")] {
				bad("btrfs on %s: subvolume %s missing (have %s)", x.Device, sv.Name, strings.Join(keysOf(got), " "))
			}
		}
	}
	for _, z := range e.zpools {
		if !s.zpools[z.Name] {
			bad("zpool %s not imported", z.Name)
		}
	}
	return problems, notes, ids
}

// md finds an array by its name (MD_DEVNAME, or MD_NAME after "host:").
func (s *state) md(name string) map[string]string {
	for _, m := range s.mds {
		n := m["MD_NAME"]
		if i := strings.LastIndex(n, ":"); i >= 0 {
			n = n[i+1:]
		}
		if m["MD_LEVEL"] != "" && (m["MD_DEVNAME"] == name || n == name) {
			return m
		}
	}
	return nil
}

// checkUnmounted says what of the layout is still mounted, active or open.
func (e *expect) checkUnmounted(s *state, before *state) []string {
	var out []string
	for t := range s.mounts {
		if t == e.root || strings.HasPrefix(t, e.root+"/") {
			out = append(out, "still mounted: "+t)
		}
	}
	for p := range s.swaps {
		if strings.HasPrefix(p, e.root+"/") {
			out = append(out, "swap file still active: "+p)
		}
	}
	for _, p := range e.swaps {
		if d := before.devs[strconv.Itoa(e.devID[p])]; d != nil && d[1] != "" && s.swaps[d[1]] {
			out = append(out, "swap still active: "+p)
		}
	}
	for i, l := range e.luks {
		if g := s.luks[strconv.Itoa(i)]; len(g) == 4 && g[2] == "1" {
			out = append(out, "LUKS still open: "+l.Name)
		}
	}
	for k, l := range s.lvs {
		if len(l[3]) >= 5 && l[3][4] == 'a' {
			out = append(out, "LV still active: "+k)
		}
	}
	for _, m := range e.mds {
		if s.md(m.Name) != nil {
			out = append(out, "md array still assembled: "+m.Name)
		}
	}
	for _, z := range e.zpools {
		if s.zpools[z.Name] {
			out = append(out, "zpool still imported: "+z.Name)
		}
	}
	sort.Strings(out)
	return out
}

// changed lists identities that differ (or vanished) between two probes;
// partition GUIDs go to notes (disko's retry of sgdisk --new re-randomises
// them: nothing is lost, nothing the NixOS configuration names changes).
func changed(before, after map[string]string) (ids, notes []string) {
	for _, k := range keysOf(before) {
		if after[k] == before[k] {
			continue
		}
		d := fmt.Sprintf("%s: %q -> %q", k, before[k], after[k])
		if strings.HasPrefix(k, "part ") {
			notes = append(notes, d)
		} else {
			ids = append(ids, d)
		}
	}
	return ids, notes
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
