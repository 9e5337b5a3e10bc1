package disko

import "encoding/json"

// Resolved returns the layout with every default filled in, in the JSON
// shape disko's module system produces (internal "_" options removed,
// partition numbers as "_index", empty hooks omitted).
func (l *Layout) Resolved() map[string]any {
	out := map[string]any{}
	put := func(key string, m map[string]any) {
		if len(m) > 0 {
			out[key] = m
		}
	}
	disks := map[string]any{}
	for _, d := range l.Disks {
		m := withHooks(d.Hooks, map[string]any{
			"type": "disk", "name": d.Name, "device": d.Device, "destroy": d.Destroy,
			"imageName": d.ImageName, "imageSize": d.ImageSize, "content": contentJSON(d.Content),
		})
		disks[d.Attr] = m
	}
	put("disk", disks)
	mds := map[string]any{}
	for _, a := range l.MDArrays {
		mds[a.Attr] = withHooks(a.Hooks, map[string]any{
			"type": "mdadm", "name": a.Name, "level": a.Level, "metadata": a.Metadata,
			"extraArgs": list(a.ExtraArgs), "content": contentJSON(a.Content),
		})
	}
	put("mdadm", mds)
	vgs := map[string]any{}
	for _, v := range l.VGs {
		lvs := map[string]any{}
		for _, lv := range v.LVs {
			lvs[lv.Attr] = withHooks(lv.Hooks, map[string]any{
				"name": lv.Name, "size": lv.Size, "lvm_type": strPtr(lv.LVMType), "pool": strPtr(lv.Pool),
				"extraArgs": list(lv.ExtraArgs), "priority": lv.Priority, "content": contentJSON(lv.Content),
			})
		}
		vgs[v.Attr] = withHooks(v.Hooks, map[string]any{"type": "lvm_vg", "name": v.Name, "lvs": lvs})
	}
	put("lvm_vg", vgs)
	pools := map[string]any{}
	for _, z := range l.Zpools {
		ds := map[string]any{}
		for _, d := range z.Datasets {
			switch x := d.(type) {
			case *ZFSFS:
				ds[x.Attr] = withHooks(x.Hooks, map[string]any{
					"type": "zfs_fs", "name": x.Name, "options": x.Options,
					"mountOptions": list(x.MountOptions), "mountpoint": strPtr(x.Mountpoint),
				})
			case *ZFSVolume:
				ds[x.Attr] = withHooks(x.Hooks, map[string]any{
					"type": "zfs_volume", "name": x.Name, "size": strPtr(x.Size), "options": x.Options,
					"extraArgs": list(x.ExtraArgs), "mountOptions": list(x.MountOptions),
					"content": contentJSON(x.Content),
				})
			}
		}
		var mode any = z.Mode
		if z.Topology != nil {
			mode = map[string]any{"topology": topologyJSON(z.Topology)}
		}
		pools[z.Attr] = withHooks(z.Hooks, map[string]any{
			"type": "zpool", "name": z.Name, "mode": mode, "options": z.Options,
			"rootFsOptions": z.RootFsOptions, "mountpoint": strPtr(z.Mountpoint),
			"mountOptions": list(z.MountOptions), "datasets": ds,
		})
	}
	put("zpool", pools)
	nodevs := map[string]any{}
	for _, n := range l.Nodevs {
		nodevs[n.Attr] = withHooks(n.Hooks, map[string]any{
			"type": "nodev", "fsType": n.FSType, "device": n.Device, "mountpoint": n.Mountpoint,
			"mountOptions": list(n.MountOptions),
		})
	}
	put("nodev", nodevs)
	bcs := map[string]any{}
	for _, b := range l.Bcachefs {
		subs := map[string]any{}
		for _, s := range b.Subvolumes {
			subs[s.Attr] = withHooks(s.Hooks, map[string]any{
				"type": "bcachefs_subvolume", "name": s.Name, "mountpoint": strPtr(s.Mountpoint),
				"mountOptions": list(s.MountOptions),
			})
		}
		bcs[b.Attr] = withHooks(b.Hooks, map[string]any{
			"type": "bcachefs_filesystem", "name": b.Name, "extraFormatArgs": list(b.ExtraFormatArgs),
			"mountOptions": list(b.MountOptions), "mountpoint": strPtr(b.Mountpoint),
			"passwordFile": strPtr(b.PasswordFile), "uuid": b.UUID, "subvolumes": subs,
		})
	}
	put("bcachefs_filesystems", bcs)
	return out
}

// ResolvedJSON is Resolved encoded as indented JSON.
func (l *Layout) ResolvedJSON() ([]byte, error) {
	return json.MarshalIndent(l.Resolved(), "", "  ")
}

func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func strPtr(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func intPtr(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func withHooks(h Hooks, m map[string]any) map[string]any {
	for k, v := range map[string]string{
		"preCreateHook": h.PreCreate, "postCreateHook": h.PostCreate,
		"preMountHook": h.PreMount, "postMountHook": h.PostMount,
		"preUnmountHook": h.PreUnmount, "postUnmountHook": h.PostUnmount,
	} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

func vdevJSON(v []Vdev) []any {
	out := []any{}
	for _, x := range v {
		out = append(out, map[string]any{"mode": x.Mode, "members": list(x.Members)})
	}
	return out
}

func topologyJSON(t *Topology) map[string]any {
	var special any = vdevJSON(t.Special)
	switch {
	case t.specialNull:
		special = nil
	case t.specialSingle:
		special = vdevJSON(t.Special)[0]
	}
	return map[string]any{
		"type": "topology", "vdev": vdevJSON(t.Vdev), "spare": list(t.Spare), "log": vdevJSON(t.Log),
		"dedup": vdevJSON(t.Dedup), "special": special, "cache": list(t.Cache),
	}
}

func swapFilesJSON(files []*SwapFile) map[string]any {
	out := map[string]any{}
	for _, s := range files {
		out[s.Attr] = map[string]any{"size": s.Size, "path": s.Path, "priority": intPtr(s.Priority), "options": list(s.Options)}
	}
	return out
}

func contentJSON(c Content) any {
	switch x := c.(type) {
	case nil:
		return nil
	case *GPT:
		parts := map[string]any{}
		for _, p := range x.Partitions {
			var hybrid any
			if p.Hybrid != nil {
				hybrid = map[string]any{"mbrPartitionType": strPtr(p.Hybrid.MBRPartitionType), "mbrBootableFlag": p.Hybrid.MBRBootableFlag}
			}
			attrs := p.Attributes
			if attrs == nil {
				attrs = []int{}
			}
			parts[p.Attr] = withHooks(p.Hooks, map[string]any{
				"_index": p.Index, "name": p.Name, "type": p.Type, "size": p.Size, "start": p.Start,
				"end": p.End, "alignment": p.Alignment, "priority": p.Priority, "label": p.Label,
				"uuid": strPtr(p.UUID), "attributes": attrs, "device": p.Device, "hybrid": hybrid,
				"content": contentJSON(p.Content),
			})
		}
		return withHooks(x.Hooks, map[string]any{"type": "gpt", "device": x.Device, "efiGptPartitionFirst": x.EFIGptPartitionFirst, "partitions": parts})
	case *Table:
		parts := []any{}
		for _, p := range x.Partitions {
			parts = append(parts, withHooks(p.Hooks, map[string]any{
				"_index": p.Index, "name": strPtr(p.Name), "part-type": p.PartType, "fs-type": strPtr(p.FSType),
				"start": p.Start, "end": p.End, "flags": list(p.Flags), "bootable": p.Bootable,
				"content": contentJSON(p.Content),
			}))
		}
		return withHooks(x.Hooks, map[string]any{"type": "table", "device": x.Device, "format": x.Format, "partitions": parts})
	case *Filesystem:
		return withHooks(x.Hooks, map[string]any{
			"type": "filesystem", "device": x.Device, "format": x.Format, "extraArgs": list(x.ExtraArgs),
			"mountOptions": list(x.MountOptions), "mountpoint": strPtr(x.Mountpoint),
		})
	case *LUKS:
		return withHooks(x.Hooks, map[string]any{
			"type": "luks", "name": x.Name, "device": x.Device, "passwordFile": strPtr(x.PasswordFile),
			"settings": x.Settings, "keyFile": strPtr(x.KeyFile), "askPassword": x.AskPassword,
			"additionalKeyFiles": list(x.AdditionalKeyFiles), "initrdUnlock": x.InitrdUnlock,
			"extraFormatArgs": list(x.ExtraFormatArgs), "extraOpenArgs": list(x.ExtraOpenArgs),
			"content": contentJSON(x.Content),
		})
	case *LVMPV:
		return withHooks(x.Hooks, map[string]any{"type": "lvm_pv", "vg": x.VG, "device": x.Device})
	case *MDRaid:
		return withHooks(x.Hooks, map[string]any{"type": "mdraid", "name": x.Name, "device": x.Device})
	case *ZFSMember:
		return withHooks(x.Hooks, map[string]any{"type": "zfs", "pool": x.Pool, "device": x.Device})
	case *Swap:
		return withHooks(x.Hooks, map[string]any{
			"type": "swap", "device": x.Device, "extraArgs": list(x.ExtraArgs), "mountOptions": list(x.MountOptions),
			"priority": intPtr(x.Priority), "discardPolicy": strPtr(x.DiscardPolicy),
			"randomEncryption": x.RandomEncryption, "resumeDevice": x.ResumeDevice,
		})
	case *Btrfs:
		subs := map[string]any{}
		for _, s := range x.Subvolumes {
			subs[s.Attr] = withHooks(s.Hooks, map[string]any{
				"type": "btrfs_subvol", "name": s.Name, "extraArgs": list(s.ExtraArgs),
				"mountOptions": list(s.MountOptions), "mountpoint": strPtr(s.Mountpoint), "swap": swapFilesJSON(s.Swap),
			})
		}
		return withHooks(x.Hooks, map[string]any{
			"type": "btrfs", "device": x.Device, "extraArgs": list(x.ExtraArgs), "mountOptions": list(x.MountOptions),
			"mountpoint": strPtr(x.Mountpoint), "swap": swapFilesJSON(x.Swap), "subvolumes": subs,
		})
	case *BcachefsMember:
		return withHooks(x.Hooks, map[string]any{
			"type": "bcachefs", "filesystem": x.Filesystem, "label": x.Label,
			"extraFormatArgs": list(x.ExtraFormatArgs), "device": x.Device,
		})
	}
	return nil
}
