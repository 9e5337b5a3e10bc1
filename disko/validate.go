package disko

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// knownMkfs lists the filesystems a "filesystem" node may format
// (mkfs.<format> must exist on a usual rescue or installer system).
var knownMkfs = map[string]bool{
	"ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true, "vfat": true,
	"fat": true, "msdos": true, "exfat": true, "f2fs": true, "ntfs": true, "ntfs3": true,
	"bcachefs": true, "jfs": true, "nilfs2": true, "reiserfs": true, "udf": true,
	"hfsplus": true, "minix": true,
}

// walkContent calls fn for c and every content nested below it.
func walkContent(c Content, fn func(Content)) {
	if c == nil {
		return
	}
	fn(c)
	switch x := c.(type) {
	case *GPT:
		for _, p := range x.Partitions {
			walkContent(p.Content, fn)
		}
	case *Table:
		for _, p := range x.Partitions {
			walkContent(p.Content, fn)
		}
	case *LUKS:
		walkContent(x.Content, fn)
	}
}

// deviceContents returns the contents held directly by a top-level device.
func deviceContents(d Device) []Content {
	switch x := d.(type) {
	case *Disk:
		return []Content{x.Content}
	case *MDArray:
		return []Content{x.Content}
	case *VG:
		var out []Content
		for _, lv := range x.LVs {
			out = append(out, lv.Content)
		}
		return out
	case *Zpool:
		var out []Content
		for _, ds := range x.Datasets {
			if v, ok := ds.(*ZFSVolume); ok {
				out = append(out, v.Content)
			}
		}
		return out
	}
	return nil
}

// devices returns all top-level devices in byte order of their keys.
func (l *Layout) devices() []Device {
	var out []Device
	out = appendDevices(out, l.Bcachefs)
	out = appendDevices(out, l.Disks)
	out = appendDevices(out, l.VGs)
	out = appendDevices(out, l.MDArrays)
	out = appendDevices(out, l.Nodevs)
	return appendDevices(out, l.Zpools)
}

// appendDevices appends the devices of one kind to out.
func appendDevices[D Device](out []Device, devs []D) []Device {
	for _, d := range devs {
		out = append(out, d)
	}
	return out
}

// eachContent visits every content of the layout with its top-level device.
func (l *Layout) eachContent(fn func(Device, Content)) {
	for _, d := range l.devices() {
		for _, c := range deviceContents(d) {
			walkContent(c, func(c Content) { fn(d, c) })
		}
	}
}

var lvFixedSizeRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([bBsSkKmMgGtTpPeE]?)$`)

// validate checks the layout as a whole (references, mountpoints, names,
// members) and, when it is sound, sets the devices' dependencies and
// creation order.
func (l *Layout) validate(errs *issues) {
	l.deps = map[string][]string{}
	l.checkToolNames(errs)
	c := &crossCheck{l: l, errs: errs, members: map[string][]string{}, luksNames: map[string]string{}, mountpoints: map[string]string{}}
	l.eachContent(c.content)
	c.deviceMounts()
	for _, v := range l.VGs {
		l.validateVG(v, errs)
	}
	c.memberless()
	l.checkUnique(errs)
	if len(errs.list) > 0 {
		return
	}
	l.setOrder(errs)
}

// crossCheck is validate's state while it walks the layout: what each
// aggregate's members are and which names and mountpoints are taken.
type crossCheck struct {
	l           *Layout
	errs        *issues
	members     map[string][]string // aggregate key -> member paths
	luksNames   map[string]string
	mountpoints map[string]string
}

// addMount takes mountpoint mp (nil: none) for path, reporting one that is
// already taken.
func (c *crossCheck) addMount(mp *string, path string) {
	if mp == nil {
		return
	}
	m := strings.TrimSuffix(*mp, "/")
	if m == "" {
		m = "/"
	}
	if prev, dup := c.mountpoints[m]; dup {
		c.errs.add(path, "mountpoint %q is already used by %s", *mp, prev)
		return
	}
	c.mountpoints[m] = path
}

// ref records that device d holds a member (at path) of the aggregate
// class.name, which d's creation then comes before.
func (c *crossCheck) ref(d Device, path, class, name, what string) {
	key := class + "." + name
	if _, ok := c.l.index[key]; !ok {
		c.errs.add(path, "%s %q does not exist (no %s)", what, name, key)
		return
	}
	c.members[key] = append(c.members[key], path)
	for _, k := range c.l.deps[key] {
		if k == d.Key() {
			return
		}
	}
	c.l.deps[key] = append(c.l.deps[key], d.Key())
}

// content checks one content x of device d.
func (c *crossCheck) content(d Device, x Content) {
	switch x := x.(type) {
	case *LVMPV:
		c.ref(d, joinPath(x.Path, "vg"), "lvm_vg", x.VG, "volume group")
	case *MDRaid:
		c.ref(d, joinPath(x.Path, "name"), "mdadm", x.Name, "mdadm array")
	case *ZFSMember:
		c.ref(d, joinPath(x.Path, "pool"), "zpool", x.Pool, "zpool")
	case *BcachefsMember:
		c.ref(d, joinPath(x.Path, "filesystem"), "bcachefs_filesystems", x.Filesystem, "bcachefs filesystem")
	case *Filesystem:
		c.filesystem(x)
	case *Btrfs:
		c.addMount(x.Mountpoint, joinPath(x.Path, "mountpoint"))
		for _, s := range x.Subvolumes {
			// A subvolume without a mountpoint may still hold swap files:
			// NixOS just cannot name them.
			c.addMount(s.Mountpoint, joinPath(s.Path, "mountpoint"))
		}
	case *LUKS:
		if x.Name != "" {
			if prev, dup := c.luksNames[x.Name]; dup {
				c.errs.add(joinPath(x.Path, "name"), "LUKS name %q is already used by %s", x.Name, prev)
			}
			c.luksNames[x.Name] = joinPath(x.Path, "name")
		}
	case *GPT:
		c.l.validateGPT(x, c.errs)
	}
}

// filesystem checks a filesystem's format and takes its mountpoint.
func (c *crossCheck) filesystem(x *Filesystem) {
	if x.Format != "" && !knownMkfs[x.Format] {
		hint := ""
		switch x.Format {
		case "swap":
			hint = ` (use type = "swap" for swap space)`
		case "zfs":
			hint = ` (use type = "zfs" and a zpool)`
		}
		c.errs.add(joinPath(x.Path, "format"), "unknown filesystem %q%s", x.Format, hint)
	}
	c.addMount(x.Mountpoint, joinPath(x.Path, "mountpoint"))
}

// deviceMounts takes the mountpoints of the top-level devices: zpools and
// their datasets (checking each zfs_volume has a size), nodevs, bcachefs
// filesystems and their subvolumes.
func (c *crossCheck) deviceMounts() {
	for _, z := range c.l.Zpools {
		c.addMount(z.Mountpoint, joinPath(z.Path, "mountpoint"))
		for _, ds := range z.Datasets {
			if f, ok := ds.(*ZFSFS); ok {
				c.addMount(f.Mountpoint, joinPath(f.Path, "mountpoint"))
			}
			if v, ok := ds.(*ZFSVolume); ok && v.Size == nil {
				c.errs.add(joinPath(v.Path, "size"), "a zfs_volume needs a size")
			}
		}
	}
	for _, n := range c.l.Nodevs {
		mp := n.Mountpoint
		c.addMount(&mp, joinPath(n.Path, "mountpoint"))
	}
	for _, b := range c.l.Bcachefs {
		c.addMount(b.Mountpoint, joinPath(b.Path, "mountpoint"))
		for _, s := range b.Subvolumes {
			c.addMount(s.Mountpoint, joinPath(s.Path, "mountpoint"))
		}
	}
}

// memberless reports the aggregates no content is a member of.
func (c *crossCheck) memberless() {
	l, errs, members := c.l, c.errs, c.members
	for _, m := range l.MDArrays {
		if len(members[m.Key()]) == 0 {
			errs.add(m.Path, "mdadm array %q has no members (no content with type = \"mdraid\"; name = %q)", m.Name, m.Attr)
		}
	}
	for _, v := range l.VGs {
		if len(members[v.Key()]) == 0 {
			errs.add(v.Path, "volume group %q has no physical volumes (no content with type = \"lvm_pv\"; vg = %q)", v.Name, v.Attr)
		}
	}
	for _, z := range l.Zpools {
		if len(members[z.Key()]) == 0 {
			errs.add(z.Path, "zpool %q has no members (no content with type = \"zfs\"; pool = %q)", z.Name, z.Attr)
		}
	}
	for _, b := range l.Bcachefs {
		if len(members[b.Key()]) == 0 && b.Mountpoint == nil && len(b.Subvolumes) == 0 {
			errs.add(b.Path, "bcachefs filesystem %q has no member devices", b.Name)
		}
	}
}

// setOrder sets the devices' creation order: each after the devices that
// hold its members.
func (l *Layout) setOrder(errs *issues) {
	order, err := toposort(l.devices(), func(a, b Device) bool {
		for _, k := range l.deps[b.Key()] {
			if k == a.Key() {
				return true
			}
		}
		return false
	}, Device.Key)
	if err != nil {
		errs.add("", "%v", err)
		return
	}
	l.order = order
}

func (l *Layout) checkUnique(errs *issues) {
	names := map[string]string{}
	check := func(kind, name, path string) {
		k := kind + "\x00" + name
		if prev, dup := names[k]; dup {
			errs.add(path, "%s name %q is already used by %s", kind, name, prev)
			return
		}
		names[k] = path
	}
	for _, d := range l.Disks {
		check("disk", d.Name, joinPath(d.Path, "name"))
	}
	devs := map[string]string{}
	for _, d := range l.Disks {
		if prev, dup := devs[d.Device]; dup && d.Device != "" {
			errs.add(joinPath(d.Path, "device"), "device %q is also used by %s", d.Device, prev)
		}
		devs[d.Device] = joinPath(d.Path, "device")
	}
	for _, m := range l.MDArrays {
		check("mdadm", m.Name, joinPath(m.Path, "name"))
	}
	for _, v := range l.VGs {
		check("lvm_vg", v.Name, joinPath(v.Path, "name"))
	}
	for _, z := range l.Zpools {
		check("zpool", z.Name, joinPath(z.Path, "name"))
	}
}

func (l *Layout) validateGPT(g *GPT, errs *issues) {
	labels := map[string]string{}
	full := ""
	for _, p := range g.Partitions {
		if prev, dup := labels[p.Label]; dup {
			errs.add(joinPath(p.Path, "label"), "duplicate partition label %q (also %s)", p.Label, prev)
		}
		labels[p.Label] = p.Path
		if p.Size == "100%" {
			if full != "" {
				errs.add(joinPath(p.Path, "size"), "a second partition with size \"100%%\" on the same table (first: %s); only one partition can take the rest of the disk", full)
			} else {
				full = p.Path
			}
		}
	}
	if full != "" {
		// A 100% partition ends at the end of the disk: any partition
		// created after it (higher priority number) finds no room.
		seen := false
		for _, p := range g.Partitions {
			if p.Path == full {
				seen = true
				continue
			}
			if seen && p.Start == "0" && p.Size != "100%" && !strings.HasPrefix(p.End, "-") {
				errs.add(joinPath(p.Path, "priority"), "partition is created after the \"100%%\" partition %s (priority %d > %d), so no space is left for it", full, p.Priority, priorityOf(g, full))
			}
		}
	}
	hybrids := 0
	for _, p := range g.Partitions {
		if p.Hybrid != nil {
			hybrids++
		}
	}
	if hybrids > 3 {
		errs.add(joinPath(g.Path, "partitions"), "%d partitions are marked hybrid; a hybrid MBR holds at most 3", hybrids)
	}
}

func priorityOf(g *GPT, path string) int {
	for _, p := range g.Partitions {
		if p.Path == path {
			return p.Priority
		}
	}
	return 0
}

// validateVG checks that thin volumes name an existing pool and that the
// requested sizes can be satisfied relative to each other.
func (l *Layout) validateVG(v *VG, errs *issues) {
	pools := map[string]bool{}
	names := map[string]string{}
	for _, lv := range v.LVs {
		if prev, dup := names[lv.Name]; dup {
			errs.add(joinPath(lv.Path, "name"), "LV name %q is already used by %s", lv.Name, prev)
		}
		names[lv.Name] = lv.Path
		if lv.LVMType != nil && *lv.LVMType == "thin-pool" {
			pools[lv.Name] = true
		}
	}
	pctTotal := 0.0
	var freeAll string
	for _, lv := range v.LVs {
		isThin := lv.LVMType != nil && *lv.LVMType == "thinlv"
		if isThin {
			if lv.Pool == nil {
				errs.add(joinPath(lv.Path, "pool"), "a thinlv needs pool = <name of a thin-pool LV>")
			} else if !pools[*lv.Pool] {
				errs.add(joinPath(lv.Path, "pool"), "thin pool %q is not a thin-pool LV of volume group %q", *lv.Pool, v.Name)
			}
			continue // thin volumes may overcommit
		}
		if lv.Pool != nil {
			errs.add(joinPath(lv.Path, "pool"), "pool is only valid with lvm_type = \"thinlv\"")
		}
		if !strings.Contains(lv.Size, "%") {
			if m := lvFixedSizeRe.FindStringSubmatch(lv.Size); m != nil {
				if f, _ := strconv.ParseFloat(m[1], 64); f == 0 {
					errs.add(joinPath(lv.Path, "size"), "LV size %q is zero", lv.Size)
				}
			}
			if freeAll != "" {
				errs.add(joinPath(lv.Path, "size"), "LV of size %s is created after %s took all free space (100%%FREE), so it cannot fit; give it a lower priority or a smaller percentage to the other", lv.Size, freeAll)
			}
			continue
		}
		pct, unit, _ := strings.Cut(lv.Size, "%")
		n, err := strconv.Atoi(pct)
		if err != nil {
			continue
		}
		if n == 0 || n > 100 {
			errs.add(joinPath(lv.Path, "size"), "LV size %q must be between 1%% and 100%%", lv.Size)
			continue
		}
		switch unit {
		case "", "FREE":
			if freeAll != "" {
				errs.add(joinPath(lv.Path, "size"), "LV of size %s is created after %s took all free space (100%%FREE), so it cannot fit", lv.Size, freeAll)
			}
			if n == 100 {
				freeAll = lv.Path
			}
		case "VG", "PVS":
			pctTotal += float64(n)
			if pctTotal > 100 {
				errs.add(joinPath(lv.Path, "size"), "LV sizes in %%%s add up to %.0f%%, more than the volume group holds", unit, pctTotal)
			}
		}
	}
}

// toposort orders list so that every element comes after those that
// must precede it, exactly as nixpkgs lib.toposort (depth-first) does.
func toposort[T any](list []T, before func(a, b T) bool, name func(T) string) ([]T, error) {
	var out []T
	for len(list) > 1 {
		us, visited, rest := list[0], []T(nil), list[1:]
		for {
			for _, x := range visited {
				if before(x, us) {
					return nil, fmt.Errorf("dependency cycle between %s and %s", name(x), name(us))
				}
			}
			var preds, others []T
			for _, x := range rest {
				if before(x, us) {
					preds = append(preds, x)
				} else {
					others = append(others, x)
				}
			}
			if len(preds) == 0 {
				break
			}
			visited = append([]T{us}, visited...)
			rest = append(append([]T{}, preds[1:]...), others...)
			us = preds[0]
		}
		out = append(out, us)
		list = append(append([]T{}, visited...), rest...)
	}
	return append(out, list...), nil
}
