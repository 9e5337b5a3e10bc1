package disko

import (
	"fmt"
	"sort"
	"strings"
)

// zfsOneTime are properties that can only be set at creation.
var zfsOneTime = map[string]bool{
	"encryption": true, "casesensitivity": true, "utf8only": true, "normalization": true,
	"volblocksize": true, "pbkdf2iters": true, "pbkdf2salt": true, "keyformat": true,
}

// topologyMember expands a topology member name to a device path: the
// by-partlabel link of the partition "zfs" on disk m (disko pastes the name
// in without hashing or escaping it, which differs for long or unusual
// disk names).
func topologyMember(m string) string {
	if strings.HasPrefix(m, "/") {
		return m
	}
	return "/dev/disk/by-partlabel/" + udevEscape(partitionLabel("disk", m, "zfs"))
}

// zpoolVdevs returns the vdev words of zpool create, as disko orders them.
func zpoolVdevs(z *Zpool, members []string) []string {
	if z.Topology == nil {
		var out []string
		if z.Mode != "" {
			out = append(out, z.Mode)
		}
		return append(out, members...)
	}
	var out []string
	class := func(keyword string, vdevs []Vdev) {
		sorted := append([]Vdev{}, vdevs...)
		sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Mode == "" && sorted[j].Mode != "" })
		for i, v := range sorted {
			if i == 0 && keyword != "" {
				out = append(out, keyword)
			}
			if v.Mode != "" {
				out = append(out, v.Mode)
			}
			for _, m := range v.Members {
				out = append(out, topologyMember(m))
			}
		}
	}
	plain := func(keyword string, devs []string) {
		if len(devs) == 0 {
			return
		}
		out = append(out, keyword)
		for _, m := range devs {
			out = append(out, topologyMember(m))
		}
	}
	t := z.Topology
	class("", t.Vdev)
	plain("spare", t.Spare)
	class("log", t.Log)
	class("dedup", t.Dedup)
	class("special", t.Special)
	plain("cache", t.Cache)
	return out
}

// topologyDevices lists every device a topology names.
func topologyDevices(t *Topology) []string {
	var out []string
	for _, group := range [][]Vdev{t.Vdev, t.Log, t.Dedup, t.Special} {
		for _, v := range group {
			for _, m := range v.Members {
				out = append(out, topologyMember(m))
			}
		}
	}
	for _, m := range append(append([]string{}, t.Spare...), t.Cache...) {
		out = append(out, topologyMember(m))
	}
	return out
}

func sortedProps(m map[string]string, skip map[string]bool) []string {
	var out []string
	for _, k := range sortedKeys(m) {
		if !skip[k] {
			out = append(out, k+"="+m[k])
		}
	}
	return out
}

func (b *builder) createZpool(z *Zpool) {
	b.hook(z.Path, "preCreateHook", z.Hooks.PreCreate, map[string]string{"name": z.Name})
	var members []string
	var devs []word
	for _, c := range b.members("zfs", z.Attr) {
		members = append(members, c.Dev())
		devs = append(devs, b.dev(c.Dev()))
	}
	if z.Topology != nil {
		got := append([]string{}, members...)
		want := topologyDevices(z.Topology)
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			b.fail("%s: the topology names %v but the zfs members of pool %q are %v", z.Path, want, z.Name, got)
			return
		}
	}
	// The pool is created only if it can neither be imported nor listed,
	// and only on members that are blank or zfs members already; anything
	// else stops the script (upstream printed a message and went on).
	var checks strings.Builder
	for _, d := range devs {
		fmt.Fprintf(&checks, "\tcase \"$(disko_fstype %s)\" in ''|zfs_member) ;; *) disko_die %s ;; esac\n", d.sh,
			shq("zpool "+z.Name+": member "+d.key+" holds another signature; refusing to create the pool"))
	}
	argv := lits("zpool", "create", "-f", z.Name, "-R", b.root)
	if z.RootFsOptions["canmount"] == "off" {
		argv = append(argv, lits("-m", "none")...)
	}
	for _, p := range sortedProps(z.Options, nil) {
		argv = append(argv, lits("-o", p)...)
	}
	for _, p := range sortedProps(z.RootFsOptions, nil) {
		argv = append(argv, lits("-O", p)...)
	}
	devWord := map[string]word{}
	for _, d := range devs {
		devWord[d.key] = d
	}
	for _, v := range zpoolVdevs(z, members) {
		if w, ok := devWord[v]; ok {
			argv = append(argv, w)
		} else if strings.HasPrefix(v, "/") {
			argv = append(argv, b.dev(v))
		} else {
			argv = append(argv, lit(v))
		}
	}
	b.add(z.Path, "pool absent, members blank", keyWords(argv), fmt.Sprintf(`disko_zpool_new=''
if ! zpool import -N -f %[1]s >/dev/null 2>&1 && ! zpool list %[1]s >/dev/null 2>&1; then
%[2]s	disko_run %[3]s
	disko_zpool_new=1
fi`, shq(z.Name), checks.String(), shWords(argv)), "")
	b.add(z.Path, "root dataset got mounted", []string{"zfs", "unmount", z.Name},
		fmt.Sprintf(`if [ -n "$disko_zpool_new" ] && [ "$(zfs get -H -o value mounted %[1]s 2>/dev/null)" = yes ]; then disko_run zfs unmount %[1]s; fi`, shq(z.Name)), "")
	for _, ds := range b.datasetsInOrder(z) {
		b.createDataset(z, ds)
	}
	b.hook(z.Path, "postCreateHook", z.Hooks.PostCreate, map[string]string{"name": z.Name})
}

// datasetsInOrder is __root then the datasets in attr byte order.
func (b *builder) datasetsInOrder(z *Zpool) []any {
	out := []any{nil} // nil = the root dataset
	for _, d := range z.Datasets {
		out = append(out, d)
	}
	return out
}

func (b *builder) createDataset(z *Zpool, ds any) {
	switch x := ds.(type) {
	case nil:
		props := map[string]string{}
		if z.Mountpoint != nil {
			props["mountpoint"] = *z.Mountpoint
		}
		for k, v := range z.RootFsOptions {
			props[k] = v
		}
		set := sortedProps(props, zfsOneTime)
		if len(set) > 0 {
			argv := append(append(lits("zfs", "set", "-u"), lits(set...)...), lit(z.Name))
			b.cmd(z.Path, "dataset "+z.Name+" exists", "", argv)
		}
	case *ZFSFS:
		full := z.Name + "/" + x.Name
		props := map[string]string{}
		if x.Mountpoint != nil {
			props["mountpoint"] = *x.Mountpoint
		}
		for k, v := range x.Options {
			props[k] = v
		}
		b.hook(x.Path, "preCreateHook", x.Hooks.PreCreate, map[string]string{"name": x.Name})
		create := lits("zfs", "create", "-up", full)
		for _, p := range sortedProps(props, nil) {
			create = append(create, lits("-o", p)...)
		}
		b.add(x.Path, "dataset "+full+" missing", keyWords(create), fmt.Sprintf(`disko_zfs_new=''
if ! zfs get type %s >/dev/null 2>&1; then
	disko_run %s
	disko_zfs_new=1
fi`, shq(full), shWords(create)), "")
		if set := sortedProps(props, zfsOneTime); len(set) > 0 {
			argv := append(append(lits("zfs", "set", "-u"), lits(set...)...), lit(full))
			b.cmd(x.Path, "dataset "+full+" existed", `[ -z "$disko_zfs_new" ]`, argv)
		}
		b.hook(x.Path, "postCreateHook", x.Hooks.PostCreate, map[string]string{"name": x.Name})
	case *ZFSVolume:
		full := z.Name + "/" + x.Name
		b.hook(x.Path, "preCreateHook", x.Hooks.PreCreate, map[string]string{"name": x.Name})
		create := lits("zfs", "create", full)
		for _, p := range sortedProps(x.Options, nil) {
			create = append(create, lits("-o", p)...)
		}
		size := ""
		if x.Size != nil {
			size = *x.Size
		}
		create = append(append(create, lits("-V", size)...), lits(x.ExtraArgs...)...)
		b.add(x.Path, "dataset "+full+" missing", keyWords(create), fmt.Sprintf(`disko_zfs_new=''
if ! zfs get type %s >/dev/null 2>&1; then
	disko_run %s
	disko_zfs_new=1
fi`, shq(full), shWords(create)), "")
		b.add(x.Path, "dataset "+full+" missing", []string{"zvol_wait"}, `if [ -n "$disko_zfs_new" ] && disko_has zvol_wait; then disko_run zvol_wait; fi`, "")
		zv := "/dev/zvol/" + full
		d := b.dev(zv)
		b.add(x.Path, "dataset "+full+" missing", []string{"settle", zv}, fmt.Sprintf(`if [ -n "$disko_zfs_new" ]; then disko_settle %s; fi`, d.sh), "")
		b.createContent(x.Content)
		b.hook(x.Path, "postCreateHook", x.Hooks.PostCreate, map[string]string{"name": x.Name})
	}
}

// keyedDatasets lists the full names of datasets with a key location.
func keyedDatasets(z *Zpool) []string {
	var out []string
	has := func(o map[string]string) bool { return o["keylocation"] != "" && o["keylocation"] != "none" }
	if has(z.RootFsOptions) {
		out = append(out, z.Name)
	}
	for _, d := range z.Datasets {
		switch x := d.(type) {
		case *ZFSFS:
			if has(x.Options) {
				out = append(out, z.Name+"/"+x.Name)
			}
		case *ZFSVolume:
			if has(x.Options) {
				out = append(out, z.Name+"/"+x.Name)
			}
		}
	}
	return out
}

func isZvol(z *Zpool, full string) bool {
	for _, d := range z.Datasets {
		if v, ok := d.(*ZFSVolume); ok && z.Name+"/"+v.Name == full {
			return true
		}
	}
	return false
}

// zfsKeyChange is a load-key or unload-key of a dataset's key.
type zfsKeyChange struct {
	verb    string // zfs load-key or unload-key
	from    string // the keystatus it runs in
	quiet   bool   // the keystatus probe's errors are not shown
	zvolFix string // the disko fix noted when the dataset is a zvol
}

// zfsKey adds the step that makes the key change k to the dataset full of
// z when its keystatus is k.from.
func (b *builder) zfsKey(z *Zpool, full string, k zfsKeyChange) {
	probe := "zfs get -H -o value keystatus " + shq(full)
	if k.quiet {
		probe += " 2>/dev/null"
	}
	b.add(z.Path, "keystatus of "+full+" is "+k.from, []string{"zfs", k.verb, full},
		fmt.Sprintf(`if [ "$(%s)" = %s ]; then disko_run zfs %s %s; fi`, probe, k.from, k.verb, shq(full)), "")
	if isZvol(z, full) {
		b.fixed(k.zvolFix)
	}
}

func (b *builder) activateZpool(z *Zpool) {
	argv := lits("zpool", "import", "-l", "-R", b.root, z.Name)
	b.add(z.Path, "pool not imported", keyWords(argv), fmt.Sprintf("if ! zpool list %s >/dev/null 2>&1; then disko_run %s; fi", shq(z.Name), shWords(argv)), "")
	for _, full := range keyedDatasets(z) {
		b.zfsKey(z, full, zfsKeyChange{verb: "load-key", from: "unavailable",
			zvolFix: "disko §5.5: key of an encrypted zvol was loaded by its short name"})
	}
	for _, d := range z.Datasets {
		if v, ok := d.(*ZFSVolume); ok {
			b.activateContents([]Content{v.Content}, "")
		}
	}
}

func (b *builder) deactivateZpool(z *Zpool) {
	for i := len(z.Datasets) - 1; i >= 0; i-- {
		if v, ok := z.Datasets[i].(*ZFSVolume); ok {
			b.closeContents([]Content{v.Content}, "")
		}
	}
	for _, full := range keyedDatasets(z) {
		b.zfsKey(z, full, zfsKeyChange{verb: "unload-key", from: "available", quiet: true,
			zvolFix: "disko §5.5: key of an encrypted zvol was unloaded by its short name, unguarded"})
	}
	b.add(z.Path, "pool imported", []string{"zpool", "export", z.Name},
		fmt.Sprintf("if zpool list %[1]s >/dev/null 2>&1; then disko_run zpool export %[1]s; fi", shq(z.Name)), "")
}

// ---------------------------------------------------------------- bcachefs

// bcachefsDev is a shell expression for the device of a bcachefs
// filesystem: the udev by-uuid link, else UUID=… which mount.bcachefs
// resolves itself.
func bcachefsDev(fs *BcachefsFS) string {
	p := fs.DevPath()
	return fmt.Sprintf(`"$(if [ -e %[1]s ]; then echo %[1]s; else echo UUID=%[2]s; fi)"`, shq(p), fs.UUID)
}

func (b *builder) bcachefsUnlock(fs *BcachefsFS, cond string) {
	if fs.PasswordFile == nil {
		return
	}
	argv := []string{"bcachefs", "unlock", "-k", "session", fs.DevPath(), "<", *fs.PasswordFile}
	body := fmt.Sprintf("disko_run bcachefs unlock -k session %s <%s", bcachefsDev(fs), shq(*fs.PasswordFile))
	if cond != "" {
		body = "if " + cond + "; then " + body + "; fi"
	}
	b.add(fs.Path, "", argv, body, "")
}

func (b *builder) createBcachefs(fs *BcachefsFS) {
	b.hook(fs.Path, "preCreateHook", fs.Hooks.PreCreate, map[string]string{"name": fs.Name})
	members := b.members("bcachefs", fs.Attr)
	if len(members) == 0 {
		b.fail("%s: no devices found for bcachefs filesystem %q", fs.Path, fs.Name)
		return
	}
	argv := lits("bcachefs", "format")
	for _, c := range members {
		m := c.(*BcachefsMember)
		argv = append(argv, lit("--label="+m.Label))
		argv = append(argv, lits(m.ExtraFormatArgs...)...)
		argv = append(argv, b.dev(m.Device))
	}
	argv = append(argv, lit("--uuid="+fs.UUID))
	argv = append(argv, lits(fs.ExtraFormatArgs...)...)
	body := "disko_run " + shWords(argv)
	key := keyWords(argv)
	if fs.PasswordFile != nil {
		body += " --encrypted <" + shq(*fs.PasswordFile)
		key = append(key, "--encrypted", "<", *fs.PasswordFile)
	}
	b.add(fs.Path, "no bcachefs with UUID "+fs.UUID, key,
		fmt.Sprintf("if ! blkid -U %s >/dev/null 2>&1; then\n\t%s\nfi", shq(fs.UUID), body), "")
	for _, s := range fs.Subvolumes {
		b.bcachefsUnlock(fs, "")
		mnt := []string{"mount", "-t", "bcachefs", "-o", "X-mount.mkdir", fs.DevPath(), "$MNTPOINT"}
		b.add(s.Path, "", mnt, fmt.Sprintf(`(
	MNTPOINT=$(mktemp -d)
	trap 'umount "$MNTPOINT"; rm -rf "$MNTPOINT"' EXIT
	disko_run mount -t bcachefs %s "$MNTPOINT"`, bcachefsDev(fs)), "")
		p := "$MNTPOINT/" + s.Name
		b.add(s.Path, "", []string{"mkdir", "-p", "dirname", p}, fmt.Sprintf("\tif ! test -d \"%s\"; then mkdir -p \"$(dirname \"%s\")\"; fi", p, p), "")
		b.add(s.Path, "subvolume missing", []string{"bcachefs", "subvolume", "create", p},
			fmt.Sprintf("\tif ! test -d \"%s\"; then disko_run bcachefs subvolume create \"%s\"; fi\n)", p, p), "")
	}
	b.hook(fs.Path, "postCreateHook", fs.Hooks.PostCreate, map[string]string{"name": fs.Name})
}

func (b *builder) mountBcachefs(e *fsEntry, target string) {
	fs := e.bcachefs
	b.add("", "not mounted", []string{"mkdir", "-p", target}, fmt.Sprintf("if ! disko_mounted %[1]s; then mkdir -p %[1]s; fi", shq(target)), "")
	b.bcachefsUnlock(fs, "! disko_mounted "+shq(target))
	opts := strings.Join(e.mountOpts, ",")
	argv := []string{"mount", "-t", "bcachefs", "-o", opts, fs.DevPath(), target}
	b.add("", "not mounted", argv, fmt.Sprintf("disko_mount %[1]s -t bcachefs -o %[2]s %[3]s %[1]s", shq(target), shq(opts), bcachefsDev(fs)), "")
}
