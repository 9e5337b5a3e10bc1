package disko

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"regexp"
	"sort"
	"strings"
)

// Parse reads the value of disko.devices as `nix eval --json` prints it,
// resolves every default as disko does and validates the result. Errors
// are a *ValidationError naming the JSON path of each problem. A layout
// whose defaults are already resolved (see Resolved) parses to the same
// layout.
func Parse(data []byte) (*Layout, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &ValidationError{Issues: []Issue{{Msg: "invalid JSON: " + err.Error()}}}
	}
	if dec.More() {
		return nil, &ValidationError{Issues: []Issue{{Msg: "invalid JSON: trailing data after the top-level value"}}}
	}
	errs := &issues{}
	l := parseLayout(v, errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	l.validate(errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return l, nil
}

// parser carries per-parse state.
type parser struct {
	errs *issues
}

var topLevelKeys = []string{"bcachefs_filesystems", "disk", "lvm_vg", "mdadm", "nodev", "zpool"}

func parseLayout(v any, errs *issues) *Layout {
	l := &Layout{index: map[string]Device{}}
	top, ok := newObj(v, "", errs)
	if !ok {
		return l
	}
	p := &parser{errs: errs}
	for _, key := range topLevelKeys {
		names, m := top.attrs(key)
		for _, name := range names {
			path := joinPath(key, name)
			o, ok := newObj(m[name], path, errs)
			if !ok {
				continue
			}
			var d Device
			switch key {
			case "disk":
				d = appendDevice(&l.Disks, p.disk(o, name))
			case "mdadm":
				d = appendDevice(&l.MDArrays, p.mdadm(o, name))
			case "zpool":
				d = appendDevice(&l.Zpools, p.zpool(o, name))
			case "lvm_vg":
				d = appendDevice(&l.VGs, p.vg(o, name))
			case "nodev":
				d = appendDevice(&l.Nodevs, p.nodev(o, name))
			case "bcachefs_filesystems":
				d = appendDevice(&l.Bcachefs, p.bcachefsFS(o, name))
			}
			l.index[d.Key()] = d
			o.done()
		}
	}
	// Unknown top-level keys.
	for _, k := range sortedKeys(top.m) {
		if !top.used[k] {
			errs.add(k, "unknown device class (expected one of %s)", strings.Join(topLevelKeys, ", "))
		}
	}
	return l
}

// checkType validates the "type" field of a node; def is used when absent
// ("" means the field is required).
func (p *parser) checkType(o *obj, want, def string) {
	v, ok := o.raw("type")
	if !ok {
		if def == "" {
			o.errs.add(o.p("type"), "required field is missing (must be %q)", want)
		}
		return
	}
	s, ok := v.(string)
	if !ok || s != want {
		o.errs.add(o.p("type"), "unknown type %s here (must be %q)", describe(v), want)
	}
}

func describe(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return jsonKind(v)
}

func isAbs(s string) bool { return strings.HasPrefix(s, "/") }

func (p *parser) disk(o *obj, attr string) *Disk {
	p.checkType(o, "disk", "disk")
	d := &Disk{Attr: attr}
	d.Path = o.path
	d.Hooks = o.hooks()
	d.Name = o.str("name", strings.ReplaceAll(attr, "/", "_"))
	d.Device = o.reqStr("device")
	if d.Device != "" && !isAbs(d.Device) {
		p.errs.add(o.p("device"), "device %q is not an absolute path", d.Device)
	}
	d.Destroy = o.boolean("destroy", true)
	d.ImageName = o.str("imageName", d.Name)
	d.ImageSize = o.str("imageSize", "2G")
	if !swapFileSizeRe.MatchString(d.ImageSize) {
		p.errs.add(o.p("imageSize"), "invalid size %q (want digits with an optional K, M, G, T or P)", d.ImageSize)
	}
	d.Content = p.content(o, "content", d.Device, true, "disk", d.Name)
	return d
}

// content parses a content slot. deviceSlot allows gpt and table.
// parentKind/parentName feed gpt partition labels.
func (p *parser) content(o *obj, key, dev string, deviceSlot bool, parentKind, parentName string) Content {
	v, ok := o.raw(key)
	if !ok || v == nil {
		return nil
	}
	path := o.p(key)
	c, ok := newObj(v, path, p.errs)
	if !ok {
		return nil
	}
	defer c.done()
	tv, ok := c.raw("type")
	if !ok {
		p.errs.add(joinPath(path, "type"), "required field is missing")
		return nil
	}
	t, _ := tv.(string)
	if dv := c.str("device", ""); dv != "" {
		dev = dv
	}
	switch t {
	case "gpt", "table":
		if !deviceSlot {
			p.errs.add(joinPath(path, "type"), "type %q cannot be used here: a partition table needs a whole device (disk, luks or mdadm content)", t)
			return nil
		}
		if t == "gpt" {
			return p.gpt(c, dev, parentKind, parentName)
		}
		return p.table(c, dev)
	case "filesystem":
		return p.filesystem(c, dev)
	case "btrfs":
		return p.btrfs(c, dev)
	case "luks":
		return p.luks(c, dev)
	case "lvm_pv":
		x := &LVMPV{Device: dev}
		x.Path, x.Hooks = path, c.hooks()
		x.VG = c.reqStr("vg")
		return x
	case "mdraid":
		x := &MDRaid{Device: dev}
		x.Path, x.Hooks = path, c.hooks()
		x.Name = c.reqStr("name")
		return x
	case "zfs":
		x := &ZFSMember{Device: dev}
		x.Path, x.Hooks = path, c.hooks()
		x.Pool = c.reqStr("pool")
		return x
	case "swap":
		return p.swap(c, dev)
	case "bcachefs":
		x := &BcachefsMember{Device: dev}
		x.Path, x.Hooks = path, c.hooks()
		x.Filesystem = c.reqStr("filesystem")
		x.Label = c.str("label", "")
		x.ExtraFormatArgs = c.strList("extraFormatArgs", nil)
		return x
	}
	allowed := "filesystem, btrfs, bcachefs, zfs, mdraid, luks, lvm_pv, swap"
	if deviceSlot {
		allowed = "gpt, table, " + allowed
	}
	p.errs.add(joinPath(path, "type"), "unknown type %s (expected one of %s)", describe(tv), allowed)
	// Mark everything as used so the unknown type is the only complaint.
	for k := range c.m {
		c.used[k] = true
	}
	return nil
}

var hex4 = regexp.MustCompile(`^[0-9A-Fa-f]{4}$`)
var guidRe = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
var (
	sgdiskPosRe = regexp.MustCompile(`^[-+]?[0-9]+[KMGTPs]?$`)
	mbrTypeRe   = regexp.MustCompile(`^(0x)?[0-9A-Fa-f]{1,2}$`)
	lvSizeRe    = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?[bBsSkKmMgGtTpPeE]?|[0-9]+%(FREE|VG|PVS|ORIGIN)?)$`)
	numSuffixRe = regexp.MustCompile(`^/dev/([vs]|(xv))d.+`)
	dashPartRe  = regexp.MustCompile(`^/dev/(disk|zvol)/.+`)
	pSuffixRe   = regexp.MustCompile(`^/dev/(nvme|mmcblk).+`)
	mdDigitRe   = regexp.MustCompile(`^/dev/md/.*[0-9]$`)
	loopRe      = regexp.MustCompile(`^/dev/loop[0-9]+$`)
)

var partSizeRe = regexp.MustCompile(`^([0-9]+[KMGTP]?|100%)$`)

func (p *parser) gpt(o *obj, dev, parentKind, parentName string) *GPT {
	g := &GPT{Device: dev, parentKind: parentKind, parentName: parentName}
	g.Path, g.Hooks = o.path, o.hooks()
	g.EFIGptPartitionFirst = o.boolean("efiGptPartitionFirst", true)
	for name, po := range o.objects("partitions") {
		g.Partitions = append(g.Partitions, p.partition(po, name, g))
		po.done()
	}
	// Stable sort by priority over attr-name order: ties keep name order.
	sort.SliceStable(g.Partitions, func(i, j int) bool {
		return g.Partitions[i].Priority < g.Partitions[j].Priority
	})
	for i, part := range g.Partitions {
		part.Index = i + 1
		part.Device = partitionDevice(part, g)
		setContentDevice(part.Content, part.Device)
	}
	return g
}

// partitionLabel is "<parent type>-<parent name>-<partition name>", hashed
// when longer than the 36 bytes a GPT name may hold.
func partitionLabel(parentKind, parentName, name string) string {
	l := parentKind + "-" + parentName + "-" + name
	if len(l) > 36 {
		sum := sha256.Sum256([]byte(l))
		return hex.EncodeToString(sum[:])[:36]
	}
	return l
}

func partitionDevice(part *Partition, g *GPT) string {
	switch {
	case part.UUID != nil:
		return "/dev/disk/by-partuuid/" + *part.UUID
	case g.parentKind == "mdadm":
		return fmt.Sprintf("/dev/disk/by-id/md-name-any:%s-part%d", g.parentName, part.Index)
	}
	return "/dev/disk/by-partlabel/" + udevEscape(part.Label)
}

func (p *parser) partition(o *obj, attr string, g *GPT) *Partition {
	part := &Partition{Attr: attr}
	part.Path, part.Hooks = o.path, o.hooks()
	part.Name = o.str("name", attr)
	part.Size = o.str("size", "0")
	if !partSizeRe.MatchString(part.Size) {
		p.errs.add(o.p("size"), "invalid size %q (want digits with an optional K, M, G, T or P suffix, or \"100%%\")", part.Size)
	}
	part.Start = o.str("start", "0")
	defEnd := "+" + part.Size
	if part.Size == "100%" {
		defEnd = "-0"
	}
	part.End = o.str("end", defEnd)
	for _, f := range []struct{ key, val string }{{"start", part.Start}, {"end", part.End}} {
		if !sgdiskPosRe.MatchString(f.val) {
			p.errs.add(o.p(f.key), "invalid sgdisk position %q", f.val)
		}
	}
	defAlign := 0
	if strings.HasSuffix(part.Start, "s") || strings.HasSuffix(part.End, "s") {
		defAlign = 1
	}
	part.Alignment = o.integer("alignment", defAlign)
	part.Label = partitionLabel(g.parentKind, g.parentName, part.Name)
	part.Label = o.str("label", part.Label)
	labelPath := o.p("name")
	if _, explicit := o.m["label"]; explicit {
		labelPath = o.p("label")
	}
	if gptNameLen(part.Label) > gptNameUnits {
		p.errs.add(labelPath, "label %q is longer than the 36 characters (UTF-16 code units) a GPT partition name holds", part.Label)
	}
	if strings.Contains(part.Label, ":") {
		p.errs.add(labelPath, "label %q holds a ':'; sgdisk --change-name ends the GPT name there, so the partition would carry another name than its by-partlabel path", part.Label)
	}
	part.UUID = o.optStr("uuid")
	if part.UUID != nil && !guidRe.MatchString(*part.UUID) {
		p.errs.add(o.p("uuid"), "invalid GUID %q", *part.UUID)
	}
	part.Attributes = o.intList("attributes")
	for i, a := range part.Attributes {
		if a < 0 || a > 63 {
			p.errs.add(indexPath(o.p("attributes"), i), "GPT attribute bit %d is out of range 0..63", a)
		}
	}
	// The content's type decides the default type code, so peek at it.
	defType := "8300"
	if c, ok := o.m["content"].(map[string]any); ok && c["type"] == "swap" {
		defType = "8200"
	}
	part.Type = o.str("type", defType)
	if !hex4.MatchString(part.Type) && !guidRe.MatchString(part.Type) {
		p.errs.add(o.p("type"), "invalid partition type %q (want a 4-digit sgdisk code like EF00 or a GUID)", part.Type)
	}
	defPrio := 1000
	switch {
	case part.Size == "100%":
		defPrio = 9001
	case part.Type == "EF02":
		defPrio = 100
	}
	part.Priority = o.integer("priority", defPrio)
	if hv, ok := o.raw("hybrid"); ok && hv != nil {
		if ho, ok := newObj(hv, o.p("hybrid"), p.errs); ok {
			part.Hybrid = &Hybrid{
				MBRPartitionType: ho.optStr("mbrPartitionType"),
				MBRBootableFlag:  ho.boolean("mbrBootableFlag", false),
			}
			if t := part.Hybrid.MBRPartitionType; t != nil && !mbrTypeRe.MatchString(*t) {
				p.errs.add(joinPath(o.p("hybrid"), "mbrPartitionType"), "invalid MBR partition type %q (want a hex byte like 0x0c)", *t)
			}
			ho.done()
		}
	}
	o.raw("device") // derived; a given value is ignored like disko's read-only option
	// Content device is set after numbering.
	part.Content = p.content(o, "content", "", false, "", "")
	return part
}

// appendDevice appends d to its kind's list and returns it.
func appendDevice[D Device](list *[]D, d D) Device {
	*list = append(*list, d)
	return d
}

// setContentDevice fills the device of a content whose parent device was
// only known after partition numbering.
func setContentDevice(c Content, dev string) {
	if d := contentDevice(c); d != nil && *d == "" {
		*d = dev
	}
}

// contentDevice points at the device field of a content that lives on a
// partition's device (nil for tables, which get theirs when parsed).
func contentDevice(c Content) *string {
	switch x := c.(type) {
	case *Filesystem:
		return &x.Device
	case *Btrfs:
		return &x.Device
	case *LUKS:
		return &x.Device
	case *LVMPV:
		return &x.Device
	case *MDRaid:
		return &x.Device
	case *ZFSMember:
		return &x.Device
	case *Swap:
		return &x.Device
	case *BcachefsMember:
		return &x.Device
	}
	return nil
}

var tableFSTypes = map[string]bool{
	"bcachefs": true, "btrfs": true, "ext2": true, "ext3": true, "ext4": true, "fat16": true,
	"fat32": true, "hfs": true, "hfs+": true, "linux-swap": true, "ntfs": true, "reiserfs": true,
	"udf": true, "xfs": true,
}

func (p *parser) table(o *obj, dev string) *Table {
	t := &Table{Device: dev}
	t.Path, t.Hooks = o.path, o.hooks()
	t.Format = o.str("format", "gpt")
	if t.Format != "gpt" && t.Format != "msdos" {
		p.errs.add(o.p("format"), "unknown table format %q (expected gpt or msdos)", t.Format)
	}
	v, ok := o.raw("partitions")
	if !ok || v == nil {
		return t
	}
	list, ok := v.([]any)
	if !ok {
		p.errs.add(o.p("partitions"), "expected a list, got %s", jsonKind(v))
		return t
	}
	for i, e := range list {
		po, ok := newObj(e, indexPath(o.p("partitions"), i), p.errs)
		if !ok {
			continue
		}
		tp := &TablePartition{Index: i + 1}
		tp.Path, tp.Hooks = po.path, po.hooks()
		if _, present := po.m["name"]; !present {
			p.errs.add(po.p("name"), "required field is missing (may be null)")
		}
		tp.Name = po.optStr("name")
		tp.PartType = po.str("part-type", "primary")
		switch tp.PartType {
		case "primary", "logical", "extended":
		default:
			p.errs.add(po.p("part-type"), "unknown part-type %q (expected primary, logical or extended)", tp.PartType)
		}
		tp.FSType = po.optStr("fs-type")
		if tp.FSType != nil && !tableFSTypes[*tp.FSType] {
			p.errs.add(po.p("fs-type"), "unknown parted fs-type %q", *tp.FSType)
		}
		tp.Start = po.str("start", "0%")
		tp.End = po.str("end", "100%")
		tp.Flags = po.strList("flags", nil)
		tp.Bootable = po.boolean("bootable", false)
		tp.Device = deviceNumbering(dev, tp.Index)
		if tp.Device == "" && dev != "" {
			p.errs.add(po.path, "cannot derive the partition device of %q (supported: /dev/sdX, /dev/vdX, /dev/nvme…, /dev/mmcblk…, /dev/md/…, /dev/mapper/…, /dev/loopN, /dev/disk/…, /dev/zvol/…)", dev)
		}
		po.raw("device")
		tp.Content = p.content(po, "content", tp.Device, false, "", "")
		po.done()
		t.Partitions = append(t.Partitions, tp)
	}
	return t
}

// deviceNumbering names partition n of dev as disko's legacy table does.
func deviceNumbering(dev string, n int) string {
	switch {
	case numSuffixRe.MatchString(dev):
		return fmt.Sprintf("%s%d", dev, n)
	case dashPartRe.MatchString(dev):
		return fmt.Sprintf("%s-part%d", dev, n)
	case pSuffixRe.MatchString(dev),
		mdDigitRe.MatchString(dev):
		return fmt.Sprintf("%sp%d", dev, n)
	case strings.HasPrefix(dev, "/dev/md/"), strings.HasPrefix(dev, "/dev/mapper/"):
		return fmt.Sprintf("%s%d", dev, n)
	case loopRe.MatchString(dev):
		return fmt.Sprintf("%sp%d", dev, n)
	}
	return ""
}

func (p *parser) filesystem(o *obj, dev string) *Filesystem {
	f := &Filesystem{Device: dev}
	f.Path, f.Hooks = o.path, o.hooks()
	f.Format = o.reqStr("format")
	f.ExtraArgs = o.strList("extraArgs", nil)
	f.MountOptions = o.strList("mountOptions", []string{"defaults"})
	f.Mountpoint = p.mountpoint(o, "mountpoint")
	return f
}

func (p *parser) mountpoint(o *obj, key string) *string {
	mp := o.optStr(key)
	if mp != nil && !isAbs(*mp) {
		p.errs.add(o.p(key), "mountpoint %q is not an absolute path", *mp)
	}
	return mp
}

func (p *parser) btrfs(o *obj, dev string) *Btrfs {
	b := &Btrfs{Device: dev}
	b.Path, b.Hooks = o.path, o.hooks()
	b.ExtraArgs = o.strList("extraArgs", nil)
	b.MountOptions = o.strList("mountOptions", []string{"defaults"})
	b.Mountpoint = p.mountpoint(o, "mountpoint")
	b.Swap = p.swapFiles(o)
	for name, so := range p.subvolumes(o, "btrfs_subvol") {
		s := &Subvolume{Attr: name}
		s.Path, s.Hooks = so.path, so.hooks()
		s.Name = so.str("name", name)
		s.ExtraArgs = so.strList("extraArgs", nil)
		s.MountOptions = so.strList("mountOptions", []string{"defaults"})
		s.Mountpoint = p.mountpoint(so, "mountpoint")
		s.Swap = p.swapFiles(so)
		so.done()
		b.Subvolumes = append(b.Subvolumes, s)
	}
	return b
}

// subvolumes yields o's subvolumes in name order, each checked to be of
// type typ if it says its type.
func (p *parser) subvolumes(o *obj, typ string) iter.Seq2[string, *obj] {
	return func(yield func(string, *obj) bool) {
		for name, so := range o.objects("subvolumes") {
			if so.has("type") {
				p.checkType(so, typ, typ)
			} else {
				so.raw("type")
			}
			if !yield(name, so) {
				return
			}
		}
	}
}

var swapFileSizeRe = regexp.MustCompile(`^[0-9]+[KMGTP]?$`)

func (p *parser) swapFiles(o *obj) []*SwapFile {
	var out []*SwapFile
	for name, so := range o.objects("swap") {
		s := &SwapFile{Attr: name}
		s.node.Path = so.path
		s.Size = so.reqStr("size")
		if s.Size != "" && !swapFileSizeRe.MatchString(s.Size) {
			p.errs.add(so.p("size"), "invalid size %q (want digits with an optional K, M, G, T or P)", s.Size)
		}
		s.Path = so.str("path", name)
		s.Priority = so.optInt("priority")
		s.Options = so.strList("options", []string{"defaults"})
		so.done()
		out = append(out, s)
	}
	return out
}

func (p *parser) luks(o *obj, dev string) *LUKS {
	l := &LUKS{Device: dev}
	l.Path, l.Hooks = o.path, o.hooks()
	l.Name = o.reqStr("name")
	l.PasswordFile = o.optStr("passwordFile")
	l.KeyFile = o.optStr("keyFile")
	l.Settings = map[string]any{}
	if v, ok := o.raw("settings"); ok && v != nil {
		m, ok := v.(map[string]any)
		if !ok {
			p.errs.add(o.p("settings"), "expected an object, got %s", jsonKind(v))
		} else {
			l.Settings = m
		}
	}
	for _, f := range []struct {
		key string
		val *string
	}{{"passwordFile", l.PasswordFile}, {"keyFile", l.KeyFile}} {
		if f.val != nil && !isAbs(*f.val) {
			p.errs.add(o.p(f.key), "%s %q is not an absolute path", f.key, *f.val)
		}
	}
	if kf, ok := l.Settings["keyFile"]; ok && kf != nil {
		s, ok := kf.(string)
		if !ok {
			p.errs.add(joinPath(o.p("settings"), "keyFile"), "expected a string, got %s", jsonKind(kf))
		} else if !isAbs(s) {
			p.errs.add(joinPath(o.p("settings"), "keyFile"), "keyFile %q is not an absolute path", s)
		}
	}
	for _, k := range []string{"keyFileSize", "keyFileOffset"} {
		if v, ok := l.Settings[k]; ok && v != nil {
			if n, ok := toInt(v); !ok || n < 0 {
				p.errs.add(joinPath(o.p("settings"), k), "expected a non-negative integer, got %s", describe(v))
			}
		}
	}
	for _, k := range []string{"allowDiscards", "bypassWorkqueues"} {
		if v, ok := l.Settings[k]; ok && v != nil {
			if _, ok := v.(bool); !ok {
				p.errs.add(joinPath(o.p("settings"), k), "expected a boolean, got %s", jsonKind(v))
			}
		}
	}
	defAsk := l.KeyFile == nil && l.PasswordFile == nil && l.Settings["keyFile"] == nil
	l.AskPassword = o.boolean("askPassword", defAsk)
	l.AdditionalKeyFiles = o.strList("additionalKeyFiles", nil)
	for i, f := range l.AdditionalKeyFiles {
		if !isAbs(f) {
			p.errs.add(indexPath(o.p("additionalKeyFiles"), i), "key file %q is not an absolute path", f)
		}
	}
	l.InitrdUnlock = o.boolean("initrdUnlock", true)
	l.ExtraFormatArgs = o.strList("extraFormatArgs", nil)
	l.ExtraOpenArgs = o.strList("extraOpenArgs", nil)
	l.Content = p.content(o, "content", l.MapperPath(), true, "luks", l.Name)
	return l
}

var discardPolicies = map[string]bool{"once": true, "pages": true, "both": true}

func (p *parser) swap(o *obj, dev string) *Swap {
	s := &Swap{Device: dev}
	s.Path, s.Hooks = o.path, o.hooks()
	s.ExtraArgs = o.strList("extraArgs", nil)
	s.MountOptions = o.strList("mountOptions", []string{"defaults"})
	s.Priority = o.optInt("priority")
	s.DiscardPolicy = o.optStr("discardPolicy")
	if s.DiscardPolicy != nil && !discardPolicies[*s.DiscardPolicy] {
		p.errs.add(o.p("discardPolicy"), "unknown discard policy %q (expected once, pages or both)", *s.DiscardPolicy)
	}
	s.RandomEncryption = o.boolean("randomEncryption", false)
	s.ResumeDevice = o.boolean("resumeDevice", false)
	return s
}

func (p *parser) mdadm(o *obj, attr string) *MDArray {
	p.checkType(o, "mdadm", "mdadm")
	m := &MDArray{Attr: attr}
	m.Path, m.Hooks = o.path, o.hooks()
	m.Name = o.str("name", attr)
	m.Level = o.integer("level", 1)
	m.Metadata = o.str("metadata", "default")
	switch m.Metadata {
	case "1", "1.0", "1.1", "1.2", "default", "ddf", "imsm":
	default:
		p.errs.add(o.p("metadata"), "unknown metadata %q (expected 1, 1.0, 1.1, 1.2, default, ddf or imsm)", m.Metadata)
	}
	m.ExtraArgs = o.strList("extraArgs", nil)
	m.Content = p.content(o, "content", m.DevPath(), true, "mdadm", m.Name)
	return m
}

var lvmTypes = map[string]bool{"mirror": true, "raid0": true, "raid1": true, "raid4": true, "raid5": true, "raid6": true, "thin-pool": true, "thinlv": true}

func (p *parser) vg(o *obj, attr string) *VG {
	p.checkType(o, "lvm_vg", "")
	v := &VG{Attr: attr}
	v.Path, v.Hooks = o.path, o.hooks()
	v.Name = o.str("name", attr)
	for name, lo := range o.objects("lvs") {
		lv := &LV{Attr: name}
		lv.Path, lv.Hooks = lo.path, lo.hooks()
		lv.Name = lo.str("name", name)
		lv.Size = lo.reqStr("size")
		if lv.Size != "" && !lvSizeRe.MatchString(lv.Size) {
			p.errs.add(lo.p("size"), "invalid LV size %q (want e.g. 10G, 100%%, 50%%VG or 100%%FREE)", lv.Size)
		}
		lv.LVMType = lo.optStr("lvm_type")
		if lv.LVMType != nil && !lvmTypes[*lv.LVMType] {
			p.errs.add(lo.p("lvm_type"), "unknown lvm_type %q (expected mirror, raid0, raid1, raid4, raid5, raid6, thin-pool or thinlv)", *lv.LVMType)
		}
		lv.Pool = lo.optStr("pool")
		lv.ExtraArgs = lo.strList("extraArgs", nil)
		defPrio := 1000
		if lv.LVMType != nil && *lv.LVMType == "thin-pool" {
			defPrio = 501
		}
		if strings.Contains(lv.Size, "100%") {
			defPrio += 251
		}
		lv.Priority = lo.integer("priority", defPrio)
		lv.Content = p.content(lo, "content", "/dev/"+v.Name+"/"+lv.Name, false, "", "")
		lo.done()
		v.LVs = append(v.LVs, lv)
	}
	sort.SliceStable(v.LVs, func(i, j int) bool { return v.LVs[i].Priority < v.LVs[j].Priority })
	return v
}

var zpoolModes = map[string]bool{"": true, "mirror": true, "raidz": true, "raidz1": true, "raidz2": true, "raidz3": true}

func (p *parser) zpool(o *obj, attr string) *Zpool {
	p.checkType(o, "zpool", "zpool")
	z := &Zpool{Attr: attr}
	z.Path, z.Hooks = o.path, o.hooks()
	z.Name = o.str("name", attr)
	if mv, ok := o.raw("mode"); ok {
		switch m := mv.(type) {
		case string:
			z.Mode = m
			if !zpoolModes[m] {
				p.errs.add(o.p("mode"), "unknown zpool mode %q (expected \"\", mirror, raidz, raidz1, raidz2 or raidz3, or a topology)", m)
			}
		default:
			if mo, ok := newObj(mv, o.p("mode"), p.errs); ok {
				z.Topology = p.topology(mo)
				mo.done()
			}
		}
	}
	z.Options = o.strMap("options")
	z.RootFsOptions = o.strMap("rootFsOptions")
	z.Mountpoint = p.mountpoint(o, "mountpoint")
	z.MountOptions = o.strList("mountOptions", []string{"defaults"})
	names, m := o.attrs("datasets")
	for _, name := range names {
		if name == "__root" {
			continue
		}
		do, ok := newObj(m[name], joinPath(o.p("datasets"), name), p.errs)
		if !ok {
			continue
		}
		t, _ := do.m["type"].(string)
		do.raw("type")
		switch t {
		case "zfs_fs":
			d := &ZFSFS{Attr: name}
			d.Path, d.Hooks = do.path, do.hooks()
			d.Name = do.str("name", name)
			d.Options = do.strMap("options")
			d.MountOptions = do.strList("mountOptions", []string{"defaults"})
			d.Mountpoint = p.mountpoint(do, "mountpoint")
			z.Datasets = append(z.Datasets, d)
		case "zfs_volume":
			d := &ZFSVolume{Attr: name}
			d.Path, d.Hooks = do.path, do.hooks()
			d.Name = do.str("name", name)
			d.Size = do.optStr("size")
			d.Options = do.strMap("options")
			d.ExtraArgs = do.strList("extraArgs", nil)
			d.MountOptions = do.strList("mountOptions", []string{"defaults"})
			d.Content = p.content(do, "content", "/dev/zvol/"+z.Name+"/"+d.Name, false, "", "")
			z.Datasets = append(z.Datasets, d)
		default:
			p.errs.add(do.p("type"), "unknown dataset type %s (expected zfs_fs or zfs_volume)", describe(do.m["type"]))
			for k := range do.m {
				do.used[k] = true
			}
		}
		do.done()
	}
	return z
}

func (p *parser) topology(o *obj) *Topology {
	tv, ok := o.raw("topology")
	if !ok {
		p.errs.add(o.p("topology"), "required field is missing")
		return &Topology{}
	}
	to, ok := newObj(tv, o.p("topology"), p.errs)
	if !ok {
		return &Topology{}
	}
	defer to.done()
	if to.has("type") {
		p.checkType(to, "topology", "topology")
	} else {
		to.raw("type")
	}
	t := &Topology{}
	t.Vdev = p.vdevs(to, "vdev")
	t.Spare = to.strList("spare", nil)
	t.Log = p.vdevs(to, "log")
	t.Dedup = p.vdevs(to, "dedup")
	t.Cache = to.strList("cache", nil)
	sv, present := to.raw("special")
	switch {
	case !present || sv == nil:
		t.specialNull = true
	default:
		if _, isList := sv.([]any); isList {
			t.Special = p.vdevs(to, "special")
		} else if so, ok := newObj(sv, to.p("special"), p.errs); ok {
			t.Special = []Vdev{p.vdev(so)}
			t.specialSingle = true
			so.done()
		}
	}
	return t
}

func (p *parser) vdevs(o *obj, key string) []Vdev {
	v, ok := o.raw(key)
	if !ok || v == nil {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		p.errs.add(o.p(key), "expected a list of vdevs, got %s", jsonKind(v))
		return nil
	}
	var out []Vdev
	for i, e := range l {
		vo, ok := newObj(e, indexPath(o.p(key), i), p.errs)
		if !ok {
			continue
		}
		out = append(out, p.vdev(vo))
		vo.done()
	}
	return out
}

func (p *parser) vdev(o *obj) Vdev {
	v := Vdev{Mode: o.str("mode", "")}
	if !zpoolModes[v.Mode] {
		p.errs.add(o.p("mode"), "unknown vdev mode %q", v.Mode)
	}
	v.Members = o.strList("members", nil)
	if len(v.Members) == 0 {
		p.errs.add(o.p("members"), "a vdev needs at least one member")
	}
	return v
}

var nodevDeviceIsFSType = map[string]bool{"proc": true, "sysfs": true, "tmpfs": true, "ramfs": true, "devtmpfs": true, "devpts": true}

func (p *parser) nodev(o *obj, attr string) *Nodev {
	p.checkType(o, "nodev", "nodev")
	n := &Nodev{Attr: attr}
	n.Path, n.Hooks = o.path, o.hooks()
	n.FSType = o.reqStr("fsType")
	defDev := "none"
	if nodevDeviceIsFSType[n.FSType] {
		defDev = n.FSType
	}
	n.Device = o.str("device", defDev)
	n.Mountpoint = o.str("mountpoint", attr)
	if !isAbs(n.Mountpoint) {
		p.errs.add(o.p("mountpoint"), "mountpoint %q is not an absolute path", n.Mountpoint)
	}
	n.MountOptions = o.strList("mountOptions", []string{"defaults"})
	return n
}

func (p *parser) bcachefsFS(o *obj, attr string) *BcachefsFS {
	p.checkType(o, "bcachefs_filesystem", "")
	b := &BcachefsFS{Attr: attr}
	b.Path, b.Hooks = o.path, o.hooks()
	b.Name = o.str("name", attr)
	b.ExtraFormatArgs = o.strList("extraFormatArgs", nil)
	b.MountOptions = o.strList("mountOptions", []string{"X-mount.mkdir"})
	b.Mountpoint = p.mountpoint(o, "mountpoint")
	b.PasswordFile = o.optStr("passwordFile")
	if b.PasswordFile != nil && !isAbs(*b.PasswordFile) {
		p.errs.add(o.p("passwordFile"), "passwordFile %q is not an absolute path", *b.PasswordFile)
	}
	sum := sha256.Sum256([]byte(b.Name))
	h := hex.EncodeToString(sum[:])[:32]
	b.UUID = o.str("uuid", h[0:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:32])
	if !guidRe.MatchString(b.UUID) {
		p.errs.add(o.p("uuid"), "invalid UUID %q", b.UUID)
	}
	for name, so := range p.subvolumes(o, "bcachefs_subvolume") {
		s := &BcachefsSubvolume{Attr: name}
		s.Path, s.Hooks = so.path, so.hooks()
		s.Name = so.str("name", name)
		s.Mountpoint = p.mountpoint(so, "mountpoint")
		def := []string{"X-mount.mkdir", "X-mount.subdir=" + strings.TrimPrefix(s.Name, "/")}
		sort.Strings(def)
		s.MountOptions = so.strList("mountOptions", def)
		so.done()
		b.Subvolumes = append(b.Subvolumes, s)
	}
	return b
}
