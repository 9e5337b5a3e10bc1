package disko

import (
	"encoding/json"
	"sort"
	"strings"
)

// mountKind says how a mount entry is mounted.
type mountKind int

const (
	mountFilesystem mountKind = iota
	mountBtrfs                // btrfs top level or subvolume
	mountZFS
	mountNodev
	mountBcachefs
)

// fsEntry is one entry of the derived fileSystems, with what the mount
// script needs to mount it.
type fsEntry struct {
	Mountpoint    string
	Device        string
	FSType        string
	Options       []string
	NeededForBoot bool

	kind      mountKind
	mountOpts []string // options on the mount command line (before subvol/zfsutil)
	subvol    string   // btrfs subvolume name
	zfsutil   bool
	bind      bool
	hooks     Hooks
	bcachefs  *BcachefsFS
	bcSubvol  string
}

// swapEntry is one entry of the derived swapDevices.
type swapEntry struct {
	Device string
	file   bool
	swap   *Swap
	sfile  *SwapFile
}

// walkAll visits every content in device order, including LV, zvol
// contents.
func (l *Layout) orderedDevices() []Device {
	if l.order != nil {
		return l.order
	}
	return l.devices()
}

// fsEntries derives the mount table: one entry per mountpoint, in byte
// order of the mountpoints (NixOS attrset order).
func (l *Layout) fsEntries() []*fsEntry {
	var out []*fsEntry
	addContent := func(c Content) {
		switch x := c.(type) {
		case *Filesystem:
			if x.Mountpoint != nil {
				out = append(out, &fsEntry{
					Mountpoint: *x.Mountpoint, Device: x.Device, FSType: x.Format, Options: x.MountOptions,
					kind: mountFilesystem, mountOpts: x.MountOptions, hooks: x.Hooks,
				})
			}
		case *Btrfs:
			for _, s := range x.Subvolumes {
				if s.Mountpoint == nil {
					continue
				}
				out = append(out, &fsEntry{
					Mountpoint: *s.Mountpoint, Device: x.Device, FSType: "btrfs",
					Options: append(append([]string{}, s.MountOptions...), "subvol="+s.Name),
					kind:    mountBtrfs, mountOpts: s.MountOptions, subvol: s.Name, hooks: s.Hooks,
				})
			}
			if x.Mountpoint != nil {
				out = append(out, &fsEntry{
					Mountpoint: *x.Mountpoint, Device: x.Device, FSType: "btrfs", Options: x.MountOptions,
					kind: mountBtrfs, mountOpts: x.MountOptions, hooks: x.Hooks,
				})
			}
		}
	}
	for _, d := range l.orderedDevices() {
		for _, c := range deviceContents(d) {
			walkContent(c, addContent)
		}
		switch x := d.(type) {
		case *Zpool:
			for _, ds := range z(x) {
				if e := zfsEntry(x, ds); e != nil {
					out = append(out, e)
				}
			}
		case *Nodev:
			e := &fsEntry{
				Mountpoint: x.Mountpoint, Device: x.Device, FSType: x.FSType, Options: x.MountOptions,
				kind: mountNodev, mountOpts: x.MountOptions, hooks: x.Hooks,
			}
			for _, o := range x.MountOptions {
				if o == "bind" {
					e.bind = true
				}
			}
			out = append(out, e)
		case *BcachefsFS:
			for _, s := range x.Subvolumes {
				if s.Mountpoint == nil {
					continue
				}
				opts := uniq(append([]string{"X-mount.mkdir", "X-mount.subdir=" + strings.TrimPrefix(s.Name, "/")}, s.MountOptions...))
				out = append(out, &fsEntry{
					Mountpoint: *s.Mountpoint, Device: x.DevPath(), FSType: "bcachefs", Options: opts, NeededForBoot: true,
					kind: mountBcachefs, mountOpts: opts, hooks: s.Hooks, bcachefs: x, bcSubvol: s.Name,
				})
			}
			if x.Mountpoint != nil {
				opts := uniq(append([]string{"X-mount.mkdir"}, x.MountOptions...))
				out = append(out, &fsEntry{
					Mountpoint: *x.Mountpoint, Device: x.DevPath(), FSType: "bcachefs", Options: opts, NeededForBoot: true,
					kind: mountBcachefs, mountOpts: opts, hooks: x.Hooks, bcachefs: x,
				})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Mountpoint < out[j].Mountpoint })
	return out
}

// zfsDatasetView is a zfs_fs or the pool's root dataset.
type zfsDatasetView struct {
	full         string
	options      map[string]string
	mountpoint   *string
	mountOptions []string
	hooks        Hooks
}

func z(p *Zpool) []zfsDatasetView {
	out := []zfsDatasetView{{full: p.Name, options: p.RootFsOptions, mountpoint: p.Mountpoint, mountOptions: p.MountOptions, hooks: p.Hooks}}
	for _, ds := range p.Datasets {
		if f, ok := ds.(*ZFSFS); ok {
			out = append(out, zfsDatasetView{full: p.Name + "/" + f.Name, options: f.Options, mountpoint: f.Mountpoint, mountOptions: f.MountOptions, hooks: f.Hooks})
		}
	}
	return out
}

func zfsEntry(p *Zpool, d zfsDatasetView) *fsEntry {
	if d.mountpoint == nil || d.options["mountpoint"] == "none" || d.options["canmount"] == "off" {
		return nil
	}
	opts := append([]string{}, d.mountOptions...)
	zfsutil := d.options["mountpoint"] != "legacy"
	if zfsutil {
		opts = append(opts, "zfsutil")
	}
	return &fsEntry{
		Mountpoint: *d.mountpoint, Device: d.full, FSType: "zfs", Options: opts,
		kind: mountZFS, mountOpts: d.mountOptions, zfsutil: zfsutil, hooks: d.hooks,
	}
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// mountOrder sorts entries as NixOS does (lib.toposort with fsBefore):
// a mount comes after every mount whose mountpoint prefixes its
// mountpoint or its device (bind mounts).
func mountOrder(entries []*fsEntry) []*fsEntry {
	norm := func(s string) string {
		if strings.HasSuffix(s, "/") {
			return s
		}
		return s + "/"
	}
	before := func(a, b *fsEntry) bool {
		am := norm(a.Mountpoint)
		return strings.HasPrefix(norm(b.Mountpoint), am) || strings.HasPrefix(norm(b.Device), am)
	}
	out, err := toposort(entries, before, func(e *fsEntry) string { return e.Mountpoint })
	if err != nil {
		// A cycle (a bind mount of its own mountpoint) is reported by
		// validation; keep byte order here.
		return entries
	}
	return out
}

// swapEntries derives swapDevices in disko's order.
func (l *Layout) swapEntries() []swapEntry {
	var out []swapEntry
	for _, d := range l.orderedDevices() {
		for _, c := range deviceContents(d) {
			walkContent(c, func(c Content) {
				switch x := c.(type) {
				case *Swap:
					out = append(out, swapEntry{Device: x.Device, swap: x})
				case *Btrfs:
					for _, s := range x.Subvolumes {
						for _, f := range s.Swap {
							if s.Mountpoint != nil {
								out = append(out, swapEntry{Device: strings.TrimSuffix(*s.Mountpoint, "/") + "/" + f.Path, file: true, sfile: f})
							}
						}
					}
					for _, f := range x.Swap {
						if x.Mountpoint != nil {
							out = append(out, swapEntry{Device: strings.TrimSuffix(*x.Mountpoint, "/") + "/" + f.Path, file: true, sfile: f})
						}
					}
				}
			})
		}
	}
	return out
}

// NixOSConfig is the NixOS configuration a layout implies: fileSystems,
// swapDevices and the boot options disko sets. It marshals to the JSON
// shape of `config` as NixOS would print those options.
type NixOSConfig struct {
	FileSystems map[string]NixOSFileSystem `json:"fileSystems,omitempty"`
	SwapDevices []map[string]any           `json:"swapDevices,omitempty"`
	Boot        map[string]any             `json:"boot,omitempty"`
}

// NixOSFileSystem is one fileSystems.<mountpoint> entry.
type NixOSFileSystem struct {
	Device        string   `json:"device"`
	FSType        string   `json:"fsType"`
	Options       []string `json:"options"`
	NeededForBoot bool     `json:"neededForBoot,omitempty"`
}

// NixOS returns the configuration the layout implies.
func (l *Layout) NixOS() *NixOSConfig {
	cfg := &NixOSConfig{FileSystems: map[string]NixOSFileSystem{}, Boot: map[string]any{}}
	for _, e := range l.fsEntries() {
		cfg.FileSystems[e.Mountpoint] = NixOSFileSystem{Device: e.Device, FSType: e.FSType, Options: list(e.Options), NeededForBoot: e.NeededForBoot}
	}
	for _, s := range l.swapEntries() {
		if s.file {
			cfg.SwapDevices = append(cfg.SwapDevices, map[string]any{"device": s.Device, "priority": intPtr(s.sfile.Priority), "options": list(s.sfile.Options)})
			continue
		}
		x := s.swap
		cfg.SwapDevices = append(cfg.SwapDevices, map[string]any{
			"device": x.Device, "discardPolicy": strPtr(x.DiscardPolicy), "priority": intPtr(x.Priority),
			"options":          list(x.MountOptions),
			"randomEncryption": map[string]any{"enable": x.RandomEncryption, "allowDiscards": x.DiscardPolicy != nil},
		})
		if x.ResumeDevice {
			cfg.Boot["resumeDevice"] = x.Device
		}
	}
	initrd := map[string]any{}
	luks := map[string]any{}
	var grub []string
	var modules []string
	for _, d := range l.orderedDevices() {
		for _, c := range deviceContents(d) {
			walkContent(c, func(c Content) {
				switch x := c.(type) {
				case *LUKS:
					if x.InitrdUnlock {
						e := map[string]any{"device": x.Device}
						for k, v := range x.Settings {
							e[k] = v
						}
						luks[x.Name] = e
					}
				case *GPT:
					for _, p := range x.Partitions {
						if strings.EqualFold(p.Type, "EF02") {
							grub = append(grub, x.Device)
							break
						}
					}
				}
			})
		}
		if vg, ok := d.(*VG); ok {
			modules = append(modules, vgKernelModules(vg)...)
		}
	}
	if len(luks) > 0 {
		initrd["luks"] = map[string]any{"devices": luks}
	}
	if len(modules) > 0 {
		initrd["kernelModules"] = modules
	}
	if len(initrd) > 0 {
		cfg.Boot["initrd"] = initrd
	}
	if len(grub) > 0 {
		cfg.Boot["loader"] = map[string]any{"grub": map[string]any{"devices": grub}}
	}
	if len(l.MDArrays) > 0 {
		cfg.Boot["swraid"] = map[string]any{"enable": true}
	}
	if len(cfg.FileSystems) == 0 {
		cfg.FileSystems = nil
	}
	if len(cfg.Boot) == 0 {
		cfg.Boot = nil
	}
	return cfg
}

// NixOSJSON is NixOS encoded as indented JSON.
func (l *Layout) NixOSJSON() ([]byte, error) {
	return json.MarshalIndent(l.NixOS(), "", "  ")
}

// lvsByAttr returns the LVs in attr-name order.
func lvsByAttr(vg *VG) []*LV {
	lvs := append([]*LV{}, vg.LVs...)
	sort.SliceStable(lvs, func(i, j int) bool { return lvs[i].Attr < lvs[j].Attr })
	return lvs
}

// vgModprobes lists the modules disko loads before creating a VG.
func vgModprobes(vg *VG) []string {
	mods := []string{"dm-snapshot"}
	for _, lv := range lvsByAttr(vg) {
		if lv.LVMType != nil && *lv.LVMType != "thinlv" {
			mods = append(mods, "dm-"+*lv.LVMType)
		}
	}
	return mods
}

func vgKernelModules(vg *VG) []string {
	mods := vgModprobes(vg)
	for _, lv := range lvsByAttr(vg) {
		if lv.LVMType == nil {
			continue
		}
		switch t := *lv.LVMType; t {
		case "mirror":
			mods = append(mods, "dm-mirror")
		case "raid0", "raid1":
			mods = append(mods, "dm-raid", t)
		case "raid4", "raid5", "raid6":
			mods = append(mods, "dm-raid", "raid456")
		default:
			mods = append(mods, "dm-raid")
		}
	}
	return mods
}
