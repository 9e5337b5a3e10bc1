package disko

import (
	_ "embed"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed prelude.sh
var prelude string

// RenderOptions tune a rendered script.
type RenderOptions struct {
	// RootMountpoint is where the layout is mounted (disko's
	// --root-mountpoint); default /mnt.
	RootMountpoint string
	// DeviceTimeout bounds every wait for a device (default 120s); the
	// script's DISKO_DEVICE_TIMEOUT environment variable overrides it.
	DeviceTimeout time.Duration
}

// Check refuses options no script can use, naming the disko
// subcommand's flags: a RootMountpoint that is not absolute, a
// DeviceTimeout that is not positive.
func (o RenderOptions) Check() error {
	if !path.IsAbs(o.RootMountpoint) {
		return fmt.Errorf("--root-mountpoint %q is not an absolute path", o.RootMountpoint)
	}
	if o.DeviceTimeout <= 0 {
		return fmt.Errorf("--device-timeout must be positive")
	}
	return nil
}

// Step is one command of a plan.
type Step struct {
	Phase string // destroy, format, mount or unmount
	Node  string // JSON path of the layout node the step belongs to
	// Guard says in words when the command runs ("" = always).
	Guard string
	// Argv is the command with devices named as in the layout (the udev
	// paths disko uses); the script resolves them at run time. Key
	// material appears only as a path (or @password / @passwordfile:PATH
	// for a passphrase fed through a pipe).
	Argv []string
	// Fix names the upstream disko bug this step exists to fix; such steps
	// have no counterpart in disko's own scripts.
	Fix string

	shell string
	extra bool // no counterpart in disko's scripts (added by a fix)
}

// Plan is the ordered list of steps for a mode.
type Plan struct {
	Mode  Mode
	Root  string
	Steps []Step
}

// shq quotes s for POSIX sh.
func shq(s string) string {
	if s != "" && safeShellRe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var safeShellRe = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)

// word is one argument: its shell text and its plan (Argv) text.
type word struct{ sh, key string }

func lit(s string) word { return word{shq(s), s} }

func lits(ss ...string) []word {
	out := make([]word, len(ss))
	for i, s := range ss {
		out[i] = lit(s)
	}
	return out
}

// splitArgs splits unescaped extra arguments on blanks as disko's shell
// would (e.g. "--iter-time 1" is two words) and quotes each word.
func splitArgs(args []string) []word {
	var out []word
	for _, a := range args {
		for _, f := range strings.Fields(a) {
			out = append(out, lit(f))
		}
	}
	return out
}

// partRef describes how the script finds a partition.
type partRef struct {
	parent string
	num    int
	label  string
	uuid   string
}

type builder struct {
	l      *Layout
	mode   Mode
	root   string
	parts  map[string]partRef
	steps  []Step
	pre    []string
	nvar   int
	phase  string
	errors []string
}

// Plan builds the ordered steps of mode.
func (l *Layout) Plan(mode Mode, opts RenderOptions) (*Plan, error) {
	if _, ok := modeNames[mode]; !ok {
		return nil, fmt.Errorf("unknown mode %d", int(mode))
	}
	root := opts.RootMountpoint
	if root == "" {
		root = "/mnt"
	}
	if !strings.HasPrefix(root, "/") {
		return nil, fmt.Errorf("root mountpoint %q is not an absolute path", root)
	}
	root = strings.TrimRight(path.Clean(root), "/")
	b := &builder{l: l, mode: mode, root: root, parts: map[string]partRef{}}
	b.indexPartitions()
	if mode.destroys() {
		b.phase = "destroy"
		b.destroy()
	}
	if mode.formats() {
		b.phase = "format"
		for _, d := range l.orderedDevices() {
			b.createDevice(d)
		}
	}
	if mode.mounts() {
		b.phase = "mount"
		b.mount()
	}
	if mode == ModeUnmount {
		b.phase = "unmount"
		b.unmount()
	}
	if len(b.errors) > 0 {
		return nil, fmt.Errorf("cannot render: %s", strings.Join(b.errors, "; "))
	}
	return &Plan{Mode: mode, Root: root, Steps: b.steps}, nil
}

// Script renders mode as a POSIX sh script. A destroy mode asks for
// confirmation unless the script's first argument is --yes-wipe-all-disks.
func (l *Layout) Script(mode Mode, opts RenderOptions) (string, error) {
	p, err := l.Plan(mode, opts)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "#!/bin/sh\n# disko layout script rendered by nixos-via: mode %s, root %s\n", mode, p.Root)
	sb.WriteString("# Usage: sh SCRIPT [--yes-wipe-all-disks]\nset -eu\n")
	if opts.DeviceTimeout > 0 {
		fmt.Fprintf(&sb, "DISKO_DEVICE_TIMEOUT=${DISKO_DEVICE_TIMEOUT:-%d}\n", int(opts.DeviceTimeout.Seconds()))
	}
	sb.WriteString(prelude)
	phase := ""
	for _, s := range p.Steps {
		if s.Phase != phase {
			phase = s.Phase
			fmt.Fprintf(&sb, "\n# ===== %s =====\ndisko_log %s\n", phase, shq("phase "+phase))
		}
		if s.Fix != "" {
			fmt.Fprintf(&sb, "# fixes upstream: %s\n", s.Fix)
		}
		sb.WriteString(s.shell)
		if !strings.HasSuffix(s.shell, "\n") {
			sb.WriteString("\n")
		}
	}
	sb.WriteString("disko_log done\n")
	return sb.String(), nil
}

func (b *builder) fail(format string, args ...any) {
	b.errors = append(b.errors, fmt.Sprintf(format, args...))
}

func (b *builder) indexPartitions() {
	for _, d := range b.l.devices() {
		for _, c := range deviceContents(d) {
			walkContent(c, func(c Content) {
				switch x := c.(type) {
				case *GPT:
					for _, p := range x.Partitions {
						r := partRef{parent: x.Device, num: p.Index, label: p.Label}
						if p.UUID != nil {
							r.uuid = *p.UUID
						}
						b.parts[p.Device] = r
					}
				case *Table:
					for _, p := range x.Partitions {
						r := partRef{parent: x.Device, num: p.Index}
						if x.Format == "gpt" {
							r.label = tableGPTName(p.Name)
						}
						b.parts[p.Device] = r
					}
				}
			})
		}
	}
}

// devExpr is a shell command printing the resolved device of path.
func (b *builder) devExpr(p string) string {
	if r, ok := b.parts[p]; ok {
		return fmt.Sprintf(`disko_part %s "$(%s)" %d %s %s`, shq(p), b.devExpr(r.parent), r.num, shq(r.label), shq(r.uuid))
	}
	return "disko_dev " + shq(p)
}

// dev resolves a device before the next step and returns it as a word.
func (b *builder) dev(p string) word {
	b.nvar++
	v := fmt.Sprintf("disko_d%d", b.nvar)
	b.pre = append(b.pre, fmt.Sprintf("%s=$(%s) || disko_die %s", v, b.devExpr(p), shq("device not found: "+p)))
	return word{`"$` + v + `"`, p}
}

func shWords(ws []word) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.sh
	}
	return strings.Join(s, " ")
}

func keyWords(ws []word) []string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.key
	}
	return s
}

// add appends a step whose shell is body (prefixed with pending device
// resolutions).
func (b *builder) add(node, guard string, argv []string, body, fix string) {
	sh := body
	if len(b.pre) > 0 {
		sh = strings.Join(b.pre, "\n") + "\n" + body
		b.pre = nil
	}
	b.steps = append(b.steps, Step{Phase: b.phase, Node: node, Guard: guard, Argv: argv, Fix: fix, shell: sh, extra: fix != ""})
}

// fixed marks the last step as changed (not added) to fix an upstream bug.
func (b *builder) fixed(fix string) {
	b.steps[len(b.steps)-1].Fix = fix
}

// cmd appends a step running argv when cond (shell) holds.
func (b *builder) cmd(node, guard, cond string, argv []word) {
	body := "disko_run " + shWords(argv)
	if cond != "" {
		body = "if " + cond + "; then\n\t" + body + "\nfi"
	}
	b.add(node, guard, keyWords(argv), body, "")
}

// hook runs a user hook with the node's variables, like disko.
func (b *builder) hook(node, name, text string, vars map[string]string) {
	if strings.TrimSpace(text) == "" {
		return
	}
	var sb strings.Builder
	sb.WriteString("(\n")
	for _, k := range sortedKeys(vars) {
		fmt.Fprintf(&sb, "\t%s=%s\n", k, shq(vars[k]))
	}
	sb.WriteString(text)
	if !strings.HasSuffix(text, "\n") {
		sb.WriteString("\n")
	}
	sb.WriteString(")")
	b.add(node, name, hookArgv(text), sb.String(), "")
}

// hookArgv is the plan text of a hook: its words when it is one simple
// line, else the raw text.
func hookArgv(text string) []string {
	t := strings.TrimSpace(text)
	if !strings.ContainsAny(t, "\n;|&$`'\"(){}<>") {
		return strings.Fields(t)
	}
	return []string{t}
}

func (b *builder) target(mp string) string { return b.root + mp }

// ---------------------------------------------------------------- destroy

// WipeTarget is a disk the destroy modes wipe.
type WipeTarget struct {
	Name   string // disk attr name in the layout (disk.<name>)
	Device string // device path as written in the layout
	Path   string // JSON path of the disk
}

// WipeTargets lists every disk the destroy modes wipe, in name order.
func (l *Layout) WipeTargets() []WipeTarget {
	var out []WipeTarget
	for _, d := range l.Disks {
		if d.Destroy {
			out = append(out, WipeTarget{Name: d.Attr, Device: d.Device, Path: d.Path})
		}
	}
	return out
}

func (b *builder) destroy() {
	targets := b.l.WipeTargets()
	var list strings.Builder
	for _, t := range targets {
		fmt.Fprintf(&list, "  %s (disk.%s)\\n", t.Device, t.Name)
	}
	b.add("", "", nil, fmt.Sprintf(`if [ "${1-}" != --yes-wipe-all-disks ]; then
	printf 'disko: the destroy mode WIPES these disks:\n%s' >&2
	disko_has_tty || disko_die 'no terminal to confirm on; pass --yes-wipe-all-disks'
	printf 'Type yes to continue: ' >/dev/tty
	IFS= read -r disko_answer </dev/tty || disko_answer=''
	[ "$disko_answer" = yes ] || disko_die 'not confirmed'
fi`, strings.ReplaceAll(list.String(), "%", "%%")), "")
	b.add("", "something is mounted on the root mountpoint", []string{"umount", "-R", b.root},
		"disko_umount_tree "+shq(b.root), "")
	for _, t := range targets {
		b.add(t.Path, "", []string{"disk-deactivate", t.Device}, "disko_wipe_disk "+shq(t.Device), "")
	}
}

// ---------------------------------------------------------------- format

func (b *builder) createDevice(d Device) {
	switch x := d.(type) {
	case *Disk:
		b.hook(x.Path, "preCreateHook", x.Hooks.PreCreate, map[string]string{"device": x.Device, "name": x.Name})
		b.createContent(x.Content)
		b.hook(x.Path, "postCreateHook", x.Hooks.PostCreate, map[string]string{"device": x.Device, "name": x.Name})
	case *MDArray:
		b.createMD(x)
	case *VG:
		b.createVG(x)
	case *Zpool:
		b.createZpool(x)
	case *BcachefsFS:
		b.createBcachefs(x)
	case *Nodev:
		b.hook(x.Path, "preCreateHook", x.Hooks.PreCreate, nil)
		b.hook(x.Path, "postCreateHook", x.Hooks.PostCreate, nil)
	}
}

func contentVars(c Content) map[string]string {
	return map[string]string{"device": c.Dev()}
}

func hooksOf(c Content) Hooks {
	switch x := c.(type) {
	case *GPT:
		return x.Hooks
	case *Table:
		return x.Hooks
	case *Filesystem:
		return x.Hooks
	case *LUKS:
		return x.Hooks
	case *LVMPV:
		return x.Hooks
	case *MDRaid:
		return x.Hooks
	case *ZFSMember:
		return x.Hooks
	case *Swap:
		return x.Hooks
	case *Btrfs:
		return x.Hooks
	case *BcachefsMember:
		return x.Hooks
	}
	return Hooks{}
}

func (b *builder) createContent(c Content) {
	if c == nil {
		return
	}
	h := hooksOf(c)
	b.hook(c.JSONPath(), "preCreateHook", h.PreCreate, contentVars(c))
	switch x := c.(type) {
	case *GPT:
		b.createGPT(x)
	case *Table:
		b.createTable(x)
	case *Filesystem:
		d := b.dev(x.Device)
		b.cmd(x.Path, "no filesystem signature on "+x.Device, "disko_want_format "+d.sh+" "+shq(blkidType(x.Format)),
			append([]word{lit("mkfs." + x.Format)}, append(splitArgsEscaped(x.ExtraArgs), d)...))
	case *Swap:
		if !x.RandomEncryption {
			d := b.dev(x.Device)
			b.cmd(x.Path, "no swap signature on "+x.Device, "disko_want_format "+d.sh+" swap",
				append(append([]word{lit("mkswap")}, splitArgs(x.ExtraArgs)...), d))
		}
	case *LVMPV:
		d := b.dev(x.Device)
		b.cmd(x.Path, "no signature on "+x.Device, "disko_want_format "+d.sh+" LVM2_member", []word{lit("pvcreate"), d})
	case *LUKS:
		b.createLUKS(x)
	case *Btrfs:
		b.createBtrfs(x)
	case *MDRaid, *ZFSMember, *BcachefsMember:
		// Members are collected statically by their aggregate device.
	}
	b.hook(c.JSONPath(), "postCreateHook", h.PostCreate, contentVars(c))
}

// splitArgsEscaped keeps each extra argument one word (disko escapes
// filesystem extraArgs).
func splitArgsEscaped(args []string) []word { return lits(args...) }

// blkidType is the TYPE blkid reports for a filesystem made by mkfs.<format>.
func blkidType(format string) string {
	switch format {
	case "vfat", "fat", "msdos":
		return "vfat"
	case "ntfs3":
		return "ntfs"
	}
	return format
}

func (b *builder) settle(node, dev string) {
	d := b.dev(dev)
	b.add(node, "", []string{"settle", dev}, "disko_settle "+d.sh, "")
}

func (b *builder) createGPT(g *GPT) {
	d := b.dev(g.Device)
	b.cmd(g.Path, "blkid finds no signature on "+g.Device, "disko_blank "+d.sh, []word{lit("sgdisk"), lit("--clear"), d})
	for _, p := range g.Partitions {
		uuid := "R"
		if p.UUID != nil {
			uuid = *p.UUID
		}
		args := lits(
			fmt.Sprintf("--partition-guid=%d:%s", p.Index, uuid),
			fmt.Sprintf("--change-name=%d:%s", p.Index, p.Label),
			fmt.Sprintf("--typecode=%d:%s", p.Index, p.Type),
			fmt.Sprintf("--attributes=%d:=:0", p.Index),
		)
		for _, a := range p.Attributes {
			args = append(args, lit(fmt.Sprintf("--attributes=%d:set:%d", p.Index, a)))
		}
		create := lits("sgdisk", "--align-end")
		if p.Alignment != 0 {
			create = append(create, lit(fmt.Sprintf("--set-alignment=%d", p.Alignment)))
		}
		create = append(create, lit(fmt.Sprintf("--new=%d:%s:%s", p.Index, p.Start, p.End)))
		d := b.dev(g.Device)
		create = append(append(create, args...), d)
		retry := append(append(lits("sgdisk"), args...), d)
		b.add(p.Path, "", keyWords(create), fmt.Sprintf("disko_run %s ||\n\tdisko_run %s", shWords(create), shWords(retry)), "")
		b.settle(p.Path, g.Device)
	}
	var hybrid []*Partition
	for _, p := range g.Partitions {
		if p.Hybrid != nil {
			hybrid = append(hybrid, p)
		}
	}
	if len(hybrid) > 0 {
		idx := make([]string, len(hybrid))
		for i, p := range hybrid {
			idx[i] = strconv.Itoa(p.Index)
		}
		spec := strings.Join(idx, ":")
		if !g.EFIGptPartitionFirst {
			spec += ":EE"
		}
		d := b.dev(g.Device)
		argv := []word{lit("sgdisk"), lit("-h"), lit(spec), d}
		body := "disko_run " + shWords(argv)
		fix := ""
		if g.EFIGptPartitionFirst {
			fix = `disko §5.2: with efiGptPartitionFirst = true upstream renders sgdisk -h 1"/dev/…" (one word); here the device is a separate argument`
		}
		b.add(g.Path, "", keyWords(argv), body, "")
		if fix != "" {
			b.fixed(fix)
		}
		// sgdisk -h puts the protective EE entry first unless :EE ends the
		// list, and numbers the hybrid entries in list order: the MBR
		// number of a partition is its position in that list (+1 after EE),
		// not its GPT number as upstream assumed.
		for i, p := range hybrid {
			mbr := i + 1
			if g.EFIGptPartitionFirst {
				mbr++
			}
			fix := ""
			if mbr != p.Index {
				fix = fmt.Sprintf("disko (found here): the MBR entry of GPT partition %d is %d, upstream retyped MBR entry %d", p.Index, mbr, p.Index)
			}
			if t := p.Hybrid.MBRPartitionType; t != nil {
				d := b.dev(g.Device)
				b.cmd(p.Path, "", "", []word{lit("sfdisk"), lit("--label-nested"), lit("dos"), lit("--part-type"), d, lit(strconv.Itoa(mbr)), lit(*t)})
				if fix != "" {
					b.fixed(fix)
				}
			}
			if p.Hybrid.MBRBootableFlag {
				d := b.dev(g.Device)
				b.cmd(p.Path, "", "", []word{lit("sfdisk"), lit("--label-nested"), lit("dos"), lit("--activate"), d, lit(strconv.Itoa(mbr))})
				if fix != "" {
					b.fixed(fix)
				}
			}
			b.add(p.Path, "", []string{"settle"}, "disko_settle", "")
		}
	}
	for _, p := range g.Partitions {
		b.createContent(p.Content)
	}
}

func (b *builder) createTable(t *Table) {
	d := b.dev(t.Device)
	blankVar := fmt.Sprintf("disko_blank%d", b.nvar)
	// Decide once: the whole table is only written to a blank device.
	b.add(t.Path, "", nil, fmt.Sprintf("if disko_blank %s; then %s=1; else %s=''; fi", d.sh, blankVar, blankVar), "")
	cond := fmt.Sprintf(`[ -n "$%s" ]`, blankVar)
	guard := "blkid finds no signature on " + t.Device
	parted := func(args ...string) []word {
		d := b.dev(t.Device)
		return append([]word{lit("parted"), lit("-s"), d, lit("--")}, lits(args...)...)
	}
	b.cmd(t.Path, guard, cond, parted("mklabel", t.Format))
	for _, p := range t.Partitions {
		var args []string
		if t.Format == "gpt" {
			args = []string{"mkpart", partedNameArg(p.Name)}
		} else {
			args = []string{"mkpart", p.PartType}
		}
		if p.FSType != nil {
			args = append(args, *p.FSType)
		}
		args = append(args, p.Start, p.End)
		b.cmd(p.Path, guard, cond, parted(args...))
		d := b.dev(t.Device)
		b.add(p.Path, guard, []string{"settle", t.Device}, fmt.Sprintf("if %s; then disko_settle %s; fi", cond, d.sh), "")
		if p.Bootable {
			b.cmd(p.Path, guard, cond, parted("set", strconv.Itoa(p.Index), "boot", "on"))
		}
		for _, f := range p.Flags {
			b.cmd(p.Path, guard, cond, parted("set", strconv.Itoa(p.Index), f, "on"))
		}
		if p.Bootable || len(p.Flags) > 0 {
			d := b.dev(t.Device)
			b.add(p.Path, guard, []string{"settle", t.Device}, fmt.Sprintf("if %s; then disko_settle %s; fi", cond, d.sh), "")
		}
	}
	for _, p := range t.Partitions {
		b.createContent(p.Content)
	}
}

// luksKey describes where cryptsetup reads the key from.
type luksKey struct {
	args  []word // --key-file … [--keyfile-size …]
	stdin string // shell producing the key on stdin ("" = none)
	check string // shell stopping the script when the key source is unusable
	ask   bool
	// file is the key or password file read ("" = none) and filePath
	// the JSON path naming it.
	file, filePath string
}

func (b *builder) luksKey(l *LUKS) luksKey {
	var k luksKey
	sizeArgs := func() []word {
		var out []word
		if v, ok := l.Settings["keyFileSize"]; ok && v != nil {
			n, _ := toInt(v)
			out = append(out, lit("--keyfile-size"), lit(strconv.Itoa(n)))
		}
		if v, ok := l.Settings["keyFileOffset"]; ok && v != nil {
			n, _ := toInt(v)
			out = append(out, lit("--keyfile-offset"), lit(strconv.Itoa(n)))
		}
		return out
	}
	switch {
	case l.Settings["keyFile"] != nil:
		kf, _ := l.Settings["keyFile"].(string)
		k.args = append([]word{lit("--key-file"), lit(kf)}, sizeArgs()...)
		k.check = fmt.Sprintf("disko_need_key %s %s", shq(kf), shq(l.Name))
		k.file, k.filePath = kf, joinPath(joinPath(l.Path, "settings"), "keyFile")
	case l.AskPassword:
		k.args = append([]word{lit("--key-file"), {"-", "@password"}}, sizeArgs()...)
		k.stdin = `printf '%s' "$disko_pw"`
		k.ask = true
	case l.PasswordFile != nil:
		// The passphrase is the file's content without trailing newlines,
		// as disko's "$(cat FILE)"; it only travels through a pipe.
		k.args = append([]word{lit("--key-file"), {"-", "@passwordfile:" + *l.PasswordFile}}, sizeArgs()...)
		k.stdin = fmt.Sprintf(`printf '%%s' "$(cat %s)"`, shq(*l.PasswordFile))
		k.check = fmt.Sprintf("disko_need_key %s %s", shq(*l.PasswordFile), shq(l.Name))
		k.file, k.filePath = *l.PasswordFile, joinPath(l.Path, "passwordFile")
	case l.KeyFile != nil:
		k.args = append([]word{lit("--key-file"), lit(*l.KeyFile)}, sizeArgs()...)
		k.check = fmt.Sprintf("disko_need_key %s %s", shq(*l.KeyFile), shq(l.Name))
		k.file, k.filePath = *l.KeyFile, joinPath(l.Path, "keyFile")
	default:
		b.fail("%s: LUKS %q has no key source", l.Path, l.Name)
	}
	return k
}

func (k luksKey) pipe(cmd string) string {
	if k.stdin != "" {
		cmd = k.stdin + " | " + cmd
	}
	if k.check != "" {
		cmd = k.check + "\n\t" + cmd
	}
	return cmd
}

func (b *builder) luksOpenArgs(l *LUKS) []word {
	var out []word
	if v, _ := l.Settings["allowDiscards"].(bool); v {
		out = append(out, lit("--allow-discards"))
	}
	if v, _ := l.Settings["bypassWorkqueues"].(bool); v {
		out = append(out, lit("--perf-no_read_workqueue"), lit("--perf-no_write_workqueue"))
	}
	return append(out, splitArgs(l.ExtraOpenArgs)...)
}

func (b *builder) createLUKS(l *LUKS) {
	k := b.luksKey(l)
	d := b.dev(l.Device)
	format := append(append(append(lits("cryptsetup", "-q", "luksFormat"), d), splitArgs(l.ExtraFormatArgs)...), k.args...)
	body := "disko_run " + shWords(format)
	if k.ask {
		body = "disko_pw=$(disko_new_password " + shq(l.Name) + ")\n\t" + k.pipe(body)
	} else {
		body = k.pipe(body)
	}
	b.add(l.Path, l.Device+" is not LUKS yet", keyWords(format),
		fmt.Sprintf("if disko_want_format %s crypto_LUKS; then\n\t%s\nfi", d.sh, body), "")
	b.openLUKS(l, k, true)
	for _, extra := range l.AdditionalKeyFiles {
		d := b.dev(l.Device)
		add := append(append(lits("cryptsetup", "luksAddKey"), d, lit(extra)), k.args...)
		// Adding a key that already unlocks the container would fill a
		// key slot on every re-run; test it first.
		test := fmt.Sprintf("cryptsetup open --test-passphrase %s --key-file %s >/dev/null 2>&1", d.sh, shq(extra))
		b.add(l.Path, extra+" does not unlock "+l.Device+" yet", keyWords(add),
			fmt.Sprintf("disko_need_key %s %s\nif ! %s; then\n\t%s\nfi", shq(extra), shq(l.Name), test, b.askFirst(l, k, "disko_run "+shWords(add))), "")
		b.fixed("disko §5.9: luksAddKey of additionalKeyFiles re-ran on every format and filled key slots")
	}
	b.createContent(l.Content)
}

// askFirst prompts for the passphrase if it was not read yet.
func (b *builder) askFirst(l *LUKS, k luksKey, cmd string) string {
	if !k.ask {
		return k.pipe(cmd)
	}
	return `[ -n "${disko_pw-}" ] || disko_pw=$(disko_password ` + shq(l.Name) + ")\n\t" + k.pipe(cmd)
}

func (b *builder) openLUKS(l *LUKS, k luksKey, persistent bool) {
	d := b.dev(l.Device)
	open := append(append(append(lits("cryptsetup", "open"), d, lit(l.Name)), b.luksOpenArgs(l)...), k.args...)
	if persistent {
		open = append(open, lit("--persistent"))
	}
	b.add(l.Path, "mapping "+l.Name+" not open", keyWords(open),
		fmt.Sprintf("if ! cryptsetup status %s >/dev/null 2>&1; then\n\t%s\nfi", shq(l.Name), b.askFirst(l, k, "disko_run "+shWords(open))), "")
}

func (b *builder) createBtrfs(x *Btrfs) {
	d := b.dev(x.Device)
	b.cmd(x.Path, "no filesystem signature on "+x.Device, "disko_want_format "+d.sh+" btrfs",
		append([]word{lit("mkfs.btrfs"), d}, splitArgs(x.ExtraArgs)...))
	if len(x.Swap) == 0 && len(x.Subvolumes) == 0 {
		return
	}
	// Each group runs in a subshell with a temporary mount of the top
	// level, unmounted by an EXIT trap, as disko does.
	group := func(node string, fn func()) {
		d := b.dev(x.Device)
		mountArgv := []word{lit("mount"), d, {`"$MNTPOINT"`, "$MNTPOINT"}, lit("-o"), lit("subvol=/")}
		b.add(node, x.Device+" is btrfs", keyWords(mountArgv), fmt.Sprintf(`if [ "$(disko_fstype %s)" = btrfs ]; then (
	MNTPOINT=$(mktemp -d)
	trap 'umount "$MNTPOINT"; rm -rf "$MNTPOINT"' EXIT
	disko_run %s`, d.sh, shWords(mountArgv)), "")
		fn()
		b.add(node, "", nil, ") fi", "")
	}
	swapfiles := func(node, dir string, files []*SwapFile) {
		for _, f := range files {
			p := "$MNTPOINT" + dir + "/" + f.Path
			argv := []word{lit("btrfs"), lit("filesystem"), lit("mkswapfile"), lit("--size"), lit(f.Size), {`"` + p + `"`, p}}
			b.add(f.node.Path, p+" missing", keyWords(argv), fmt.Sprintf("\tif ! test -e \"%s\"; then disko_run %s; fi", p, shWords(argv)), "")
		}
	}
	if len(x.Swap) > 0 {
		group(x.Path, func() { swapfiles(x.Path, "", x.Swap) })
	}
	for _, s := range x.Subvolumes {
		group(s.Path, func() {
			p := "$MNTPOINT/" + s.Name
			b.add(s.Path, "", []string{"mkdir", "-p", "dirname", p}, fmt.Sprintf("\tmkdir -p \"$(dirname \"%s\")\"", p), "")
			argv := append([]word{lit("btrfs"), lit("subvolume"), lit("create"), {`"` + p + `"`, p}}, splitArgs(s.ExtraArgs)...)
			b.add(s.Path, "subvolume missing", keyWords(argv), fmt.Sprintf("\tif ! btrfs subvolume show \"%s\" >/dev/null 2>&1; then disko_run %s; fi", p, shWords(argv)), "")
			swapfiles(s.Path, "/"+s.Name, s.Swap)
		})
	}
}

// members returns the devices of all contents that join an aggregate
// (kind "mdraid" name, "lvm_pv" vg, "zfs" pool, "bcachefs" filesystem) in
// device order.
func (b *builder) members(kind, name string) []Content {
	var out []Content
	for _, d := range b.l.orderedDevices() {
		for _, c := range deviceContents(d) {
			walkContent(c, func(c Content) {
				switch x := c.(type) {
				case *MDRaid:
					if kind == "mdraid" && x.Name == name {
						out = append(out, x)
					}
				case *LVMPV:
					if kind == "lvm_pv" && x.VG == name {
						out = append(out, x)
					}
				case *ZFSMember:
					if kind == "zfs" && x.Pool == name {
						out = append(out, x)
					}
				case *BcachefsMember:
					if kind == "bcachefs" && x.Filesystem == name {
						out = append(out, x)
					}
				}
			})
		}
	}
	return out
}

func (b *builder) createMD(m *MDArray) {
	b.hook(m.Path, "preCreateHook", m.Hooks.PreCreate, map[string]string{"name": m.Name})
	members := b.members("mdraid", m.Attr)
	md := "/dev/md/" + m.Name
	var devs []word
	for _, c := range members {
		devs = append(devs, b.dev(c.Dev()))
	}
	create := append(lits("mdadm", "--create", md, fmt.Sprintf("--level=%d", m.Level),
		fmt.Sprintf("--raid-devices=%d", len(members)), "--metadata="+m.Metadata, "--force", "--homehost=any"),
		lits(m.ExtraArgs...)...)
	create = append(create, devs...)
	cond := fmt.Sprintf("! disko_md_find %s >/dev/null", shq(m.Name))
	b.add(m.Path, md+" missing", keyWords(create), fmt.Sprintf("disko_md_new=''\nif %s; then\n\techo y | disko_run %s\n\tdisko_md_new=1\nfi", cond, shWords(create)), "")
	d := b.dev(md)
	b.add(m.Path, md+" missing", []string{"settle", md}, fmt.Sprintf(`if [ -n "$disko_md_new" ]; then disko_settle %s; fi`, d.sh), "")
	// Only a freshly created array gets its stale partition table zapped.
	d = b.dev(md)
	zap := []word{lit("sgdisk"), lit("--zap-all"), d}
	b.add(m.Path, md+" missing", keyWords(zap), fmt.Sprintf(`if [ -n "$disko_md_new" ]; then disko_run %s >/dev/null; fi`, shWords(zap)), "")
	b.createContent(m.Content)
	b.hook(m.Path, "postCreateHook", m.Hooks.PostCreate, map[string]string{"name": m.Name})
}

func (b *builder) createVG(v *VG) {
	b.hook(v.Path, "preCreateHook", v.Hooks.PreCreate, map[string]string{"name": v.Name})
	for _, mod := range vgModprobes(v) {
		b.add(v.Path, "", []string{"modprobe", mod}, fmt.Sprintf("modprobe %s 2>/dev/null || :", shq(mod)), "")
	}
	var devs []word
	for _, c := range b.members("lvm_pv", v.Attr) {
		devs = append(devs, b.dev(c.Dev()))
	}
	create := append(lits("vgcreate", v.Name), devs...)
	b.cmd(v.Path, "VG "+v.Name+" missing", fmt.Sprintf("! vgdisplay %s >/dev/null 2>&1", shq(v.Name)), create)
	for _, lv := range v.LVs {
		argv := lits("lvcreate", "--yes")
		switch {
		case lv.LVMType != nil && *lv.LVMType == "thinlv":
			argv = append(argv, lits("-V", lv.Size)...)
		case strings.Contains(lv.Size, "%"):
			size := lv.Size
			if strings.HasSuffix(size, "%") {
				size += "FREE"
			}
			argv = append(argv, lits("-l", size)...)
		default:
			argv = append(argv, lits("-L", lv.Size)...)
		}
		argv = append(argv, lits("-n", lv.Name)...)
		if lv.Pool != nil {
			argv = append(argv, lit("--thinpool="+*lv.Pool))
		}
		if lv.LVMType != nil && *lv.LVMType != "thinlv" {
			argv = append(argv, lit("--type="+*lv.LVMType))
		}
		argv = append(append(argv, splitArgs(lv.ExtraArgs)...), lit(v.Name))
		b.cmd(lv.Path, "LV "+v.Name+"/"+lv.Name+" missing", fmt.Sprintf("! lvdisplay %s >/dev/null 2>&1", shq(v.Name+"/"+lv.Name)), argv)
	}
	for _, lv := range v.LVs {
		b.createContent(lv.Content)
	}
	b.hook(v.Path, "postCreateHook", v.Hooks.PostCreate, map[string]string{"name": v.Name})
}

// ---------------------------------------------------------------- mount

func (b *builder) mount() {
	for _, d := range b.l.orderedDevices() {
		b.activateDevice(d)
	}
	for _, e := range mountOrder(b.l.fsEntries()) {
		b.mountEntry(e)
	}
	for _, s := range b.l.swapEntries() {
		if s.file || s.swap.RandomEncryption {
			continue
		}
		x := s.swap
		argv := lits("swapon")
		pol, pri := "", ""
		if x.DiscardPolicy != nil {
			pol = *x.DiscardPolicy
			if pol == "both" {
				argv = append(argv, lit("--discard"))
			} else {
				argv = append(argv, lit("--discard="+pol))
			}
		}
		if x.Priority != nil {
			pri = strconv.Itoa(*x.Priority)
			argv = append(argv, lit("--priority="+pri))
		}
		opts := strings.Join(x.MountOptions, ",")
		argv = append(argv, lit("--options="+opts))
		d := b.dev(x.Device)
		argv = append(argv, d)
		b.add(x.Path, "swap not active and DISKO_SKIP_SWAP != 1", keyWords(argv),
			fmt.Sprintf("if [ \"${DISKO_SKIP_SWAP-}\" != 1 ] && ! disko_swap_active %s; then disko_swapon %s %s %s %s; fi", d.sh, d.sh, shq(pol), shq(pri), shq(opts)),
			"disko §5.1 (PR #1057): swap partitions were no longer activated in mount mode")
	}
}

// activateDevice opens what a device needs before mounting: LUKS
// containers (all of them, also inside LVs), md arrays, VGs, pools.
func (b *builder) activateDevice(d Device) {
	switch x := d.(type) {
	case *Disk:
		b.activateContents([]Content{x.Content}, "")
	case *MDArray:
		var devs []word
		members := b.members("mdraid", x.Attr)
		for _, c := range members {
			devs = append(devs, b.dev(c.Dev()))
		}
		argv := append(lits("mdadm", "--assemble", "/dev/md/"+x.Name), devs...)
		b.add(x.Path, "/dev/md/"+x.Name+" missing", keyWords(argv),
			fmt.Sprintf("if ! disko_md_find %s >/dev/null; then disko_run %s; fi", shq(x.Name), shWords(argv)),
			"disko #705/PR #1149: mount mode never assembled md arrays")
		b.activateContents([]Content{x.Content}, "")
	case *VG:
		b.add(x.Path, "", []string{"vgchange", "-a", "y", x.Name}, "disko_run vgchange -a y "+shq(x.Name), "")
		var cs []Content
		for _, lv := range x.LVs {
			cs = append(cs, lv.Content)
		}
		b.activateContents(cs, "disko §5.4: LUKS inside an LV was never opened by mount mode")
	case *Zpool:
		b.activateZpool(x)
	}
}

func (b *builder) activateContents(cs []Content, fix string) {
	for _, c := range cs {
		walkContent(c, func(c Content) {
			if l, ok := c.(*LUKS); ok {
				b.hook(l.Path, "preMountHook", l.Hooks.PreMount, contentVars(l))
				b.openLUKS(l, b.luksKey(l), false)
				if fix != "" {
					b.steps[len(b.steps)-1].Fix = fix
				}
				b.hook(l.Path, "postMountHook", l.Hooks.PostMount, contentVars(l))
			}
		})
	}
}

func (b *builder) mountEntry(e *fsEntry) {
	target := b.target(e.Mountpoint)
	vars := map[string]string{"device": e.Device, "mountpoint": e.Mountpoint}
	b.hook("", "preMountHook", e.hooks.PreMount, vars)
	var argv []word
	switch e.kind {
	case mountFilesystem:
		argv = []word{lit("mount"), b.dev(e.Device), lit(target), lit("-t"), lit(e.FSType)}
		for _, o := range e.mountOpts {
			argv = append(argv, lit("-o"), lit(o))
		}
	case mountBtrfs:
		argv = []word{lit("mount"), b.dev(e.Device), lit(target)}
		for _, o := range e.mountOpts {
			argv = append(argv, lit("-o"), lit(o))
		}
		if e.subvol != "" {
			argv = append(argv, lit("-o"), lit("subvol="+e.subvol))
		}
	case mountNodev:
		dev := e.Device
		if e.bind {
			dev = b.root + dev
		}
		argv = []word{lit("mount"), lit("-t"), lit(e.FSType), lit(dev), lit(target)}
		for _, o := range e.mountOpts {
			argv = append(argv, lit("-o"), lit(o))
		}
	case mountZFS:
		argv = []word{lit("mount"), lit(e.Device), lit(target)}
		for _, o := range e.mountOpts {
			argv = append(argv, lit("-o"), lit(o))
		}
		if e.zfsutil {
			argv = append(argv, lit("-o"), lit("zfsutil"))
		}
		argv = append(argv, lit("-t"), lit("zfs"))
	case mountBcachefs:
		b.mountBcachefs(e, target)
		b.hook("", "postMountHook", e.hooks.PostMount, vars)
		return
	}
	b.add("", "not mounted", keyWords(argv), fmt.Sprintf("disko_mount %s %s", shq(target), shWords(argv[1:])), "")
	b.hook("", "postMountHook", e.hooks.PostMount, vars)
}

// ---------------------------------------------------------------- unmount

func (b *builder) unmount() {
	type entry struct {
		key  string
		step func()
	}
	var entries []entry
	for _, e := range b.l.fsEntries() {
		target := b.target(e.Mountpoint)
		e := e
		entries = append(entries, entry{e.Mountpoint, func() {
			vars := map[string]string{"device": e.Device, "mountpoint": e.Mountpoint}
			b.hook("", "preUnmountHook", e.hooks.PreUnmount, vars)
			b.add("", "mounted", []string{"umount", target}, fmt.Sprintf("if disko_mounted %s; then disko_run umount %s; fi", shq(target), shq(target)), "")
			b.hook("", "postUnmountHook", e.hooks.PostUnmount, vars)
		}})
	}
	for _, s := range b.l.swapEntries() {
		if s.file || s.swap.RandomEncryption {
			continue
		}
		dev := s.Device
		entries = append(entries, entry{dev, func() {
			expr := b.devExpr(dev)
			b.add("", "swap active", []string{"swapoff", dev},
				fmt.Sprintf("if disko_swapdev=$(DISKO_DEVICE_TIMEOUT=0 %s 2>/dev/null) && disko_swap_active \"$disko_swapdev\"; then disko_run swapoff \"$disko_swapdev\"; fi", expr), "")
		}})
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].key > entries[j].key })
	for _, e := range entries {
		e.step()
	}
	devs := b.l.orderedDevices()
	for i := len(devs) - 1; i >= 0; i-- {
		b.deactivateDevice(devs[i])
	}
}

func (b *builder) closeContents(cs []Content, fix string) {
	var lukses []*LUKS
	for _, c := range cs {
		walkContent(c, func(c Content) {
			if l, ok := c.(*LUKS); ok {
				lukses = append(lukses, l)
			}
		})
	}
	for i := len(lukses) - 1; i >= 0; i-- {
		l := lukses[i]
		b.add(l.Path, "mapping "+l.Name+" open", []string{"cryptsetup", "close", l.Name},
			fmt.Sprintf("if cryptsetup status %s >/dev/null 2>&1; then disko_run cryptsetup close %s; fi", shq(l.Name), shq(l.Name)), fix)
	}
}

func (b *builder) deactivateDevice(d Device) {
	switch x := d.(type) {
	case *Disk:
		b.closeContents([]Content{x.Content}, "")
	case *MDArray:
		b.closeContents([]Content{x.Content}, "")
		b.add(x.Path, "/dev/md/"+x.Name+" exists", []string{"mdadm", "--stop", "/dev/md/" + x.Name},
			fmt.Sprintf("if disko_md=$(disko_md_find %s); then disko_run mdadm --stop \"$disko_md\"; fi", shq(x.Name)), "")
	case *VG:
		var cs []Content
		for _, lv := range x.LVs {
			cs = append(cs, lv.Content)
		}
		b.closeContents(cs, "disko §5.4: LUKS inside an LV was never closed by unmount mode")
		b.add(x.Path, "", []string{"vgchange", "-a", "n", x.Name},
			fmt.Sprintf("if vgdisplay %s >/dev/null 2>&1; then disko_run vgchange -a n %s; fi", shq(x.Name), shq(x.Name)), "")
	case *Zpool:
		b.deactivateZpool(x)
	}
}
