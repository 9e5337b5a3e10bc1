package conformance

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/target"
)

// expect is what a mounted layout must look like in the guest, derived
// from the parsed layout and the NixOS configuration it implies.
type expect struct {
	root    string
	mounts  []expMount
	swaps   []string // swap partitions/volumes mount mode activates (device paths)
	swapRnd []string // random-encryption swap devices (NixOS sets them up at boot)
	files   []string // swap files, paths relative to the root
	luks    []*disko.LUKS
	vgs     []*disko.VG
	mds     []*disko.MDArray
	members map[string]int // md array attr -> member count
	gpts    []*disko.GPT
	tables  []*disko.Table
	btrfs   []*disko.Btrfs // with subvolumes
	zpools  []*disko.Zpool
	devs    []string // every device path the probe resolves, index = id
	devID   map[string]int
}

type expMount struct {
	mp     string
	fs     disko.NixOSFileSystem
	block  bool // backed by a block device the layout declares
	marker bool // the test writes a marker file into it
}

func newExpect(l *disko.Layout, root string) *expect {
	e := &expect{root: root, members: map[string]int{}, devID: map[string]int{}}
	cfg := l.NixOS()
	var mps []string
	for mp := range cfg.FileSystems {
		mps = append(mps, mp)
	}
	sort.Strings(mps)
	for _, mp := range mps {
		fs := cfg.FileSystems[mp]
		m := expMount{mp: mp, fs: fs}
		m.block = strings.HasPrefix(fs.Device, "/dev/") && fs.FSType != "zfs" && fs.FSType != "bcachefs"
		m.marker = m.block && !hasOpt(fs.Options, "ro")
		if m.block {
			e.dev(fs.Device)
		}
		e.mounts = append(e.mounts, m)
	}
	contents(l, func(c disko.Content) {
		switch x := c.(type) {
		case *disko.Swap:
			e.dev(x.Device)
			if x.RandomEncryption {
				e.swapRnd = append(e.swapRnd, x.Device)
			} else {
				e.swaps = append(e.swaps, x.Device)
			}
		case *disko.LUKS:
			e.dev(x.Device)
			e.luks = append(e.luks, x)
		case *disko.GPT:
			e.dev(x.Device)
			e.gpts = append(e.gpts, x)
		case *disko.Table:
			e.dev(x.Device)
			for _, p := range x.Partitions {
				e.dev(p.Device)
			}
			e.tables = append(e.tables, x)
		case *disko.Btrfs:
			if len(x.Subvolumes) > 0 {
				e.dev(x.Device)
				e.btrfs = append(e.btrfs, x)
			}
		case *disko.MDRaid:
			e.members[x.Name]++
		}
	})
	for _, s := range cfg.SwapDevices {
		d, _ := s["device"].(string)
		if !strings.HasPrefix(d, "/dev/") {
			e.files = append(e.files, d)
		}
	}
	e.vgs, e.mds, e.zpools = l.VGs, l.MDArrays, l.Zpools
	return e
}

func (e *expect) dev(p string) int {
	if id, ok := e.devID[p]; ok {
		return id
	}
	e.devID[p] = len(e.devs)
	e.devs = append(e.devs, p)
	return len(e.devs) - 1
}

func (e *expect) target(mp string) string { return path.Clean(e.root + "/" + mp) }

func hasOpt(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// udevUnescape undoes udev's \xNN escaping of by-partlabel names.
func udevUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if n, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var mdPartRe = regexp.MustCompile(`^/dev/disk/by-id/md-name-(?:[^:]*:)?(.+)-part([0-9]+)$`)

// resolveArgs says how the guest finds a device without udev links.
func resolveArgs(p string) (kind, val string) {
	switch {
	case strings.HasPrefix(p, "/dev/disk/by-partlabel/"):
		return "partlabel", udevUnescape(strings.TrimPrefix(p, "/dev/disk/by-partlabel/"))
	case strings.HasPrefix(p, "/dev/disk/by-partuuid/"):
		return "partuuid", strings.TrimPrefix(p, "/dev/disk/by-partuuid/")
	case strings.HasPrefix(p, "/dev/disk/by-uuid/"):
		return "uuid", strings.TrimPrefix(p, "/dev/disk/by-uuid/")
	case strings.HasPrefix(p, "/dev/disk/by-label/"):
		return "label", udevUnescape(strings.TrimPrefix(p, "/dev/disk/by-label/"))
	case mdPartRe.MatchString(p):
		m := mdPartRe.FindStringSubmatch(p)
		return "mdpart", m[1] + ":" + m[2]
	case strings.HasPrefix(p, "/dev/md/"):
		return "md", strings.TrimPrefix(p, "/dev/md/")
	}
	return "path", ""
}

// probeFuncs are the shell helpers of every probe. conf_dev ID KIND VALUE
// PATH resolves a device path (the udev link if there is one, else by
// blkid or mdadm, as the installer has no udev) and prints
// D ID RESOLVED MAJ:MIN TYPE UUID; it leaves the path in $r.
const probeFuncs = `export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
set +e
conf_md() {
	for m in /dev/md[0-9]*; do
		case $m in *p[0-9]*) continue ;; esac
		[ -b "$m" ] || continue
		if mdadm --detail --export "$m" 2>/dev/null | grep -Eq "^(MD_NAME=([^:]*:)?|MD_DEVNAME=)$1\$"; then echo "$m"; return; fi
	done
}
conf_dev() {
	r=
	if [ -e "$4" ]; then r=$(readlink -f "$4")
	else
		case $2 in
		partlabel) r=$(blkid -c /dev/null -o device -t PARTLABEL="$3" 2>/dev/null | head -n1) ;;
		partuuid) r=$(blkid -c /dev/null -o device -t PARTUUID="$3" 2>/dev/null | head -n1) ;;
		uuid) r=$(blkid -c /dev/null -U "$3" 2>/dev/null) ;;
		label) r=$(blkid -c /dev/null -L "$3" 2>/dev/null) ;;
		md) r=$(conf_md "$3") ;;
		mdpart) r=$(conf_md "${3%:*}"); [ -n "$r" ] && r=${r}p${3##*:} ;;
		esac
	fi
	mm= ty= uu=
	if [ -n "$r" ] && [ -b "$r" ]; then
		mm=$(lsblk -dno MAJ:MIN "$r" 2>/dev/null | tr -d ' ')
		ty=$(blkid -p -o value -s TYPE "$r" 2>/dev/null)
		uu=$(blkid -p -o value -s UUID "$r" 2>/dev/null)
	fi
	printf 'D\t%s\t%s\t%s\t%s\t%s\n' "$1" "$r" "$mm" "$ty" "$uu"
}
`

const markerName = ".nixos-via-conformance"

// probeScript prints the guest's state as tab-separated records. mounted
// adds what only a mounted layout has (sources, markers, subvolumes);
// keys tests every additional key file.
func (e *expect) probeScript(mounted, keys bool) string {
	q := target.ShellQuote
	var b strings.Builder
	b.WriteString(probeFuncs)
	b.WriteString(`findmnt -rn -o TARGET,FSTYPE,OPTIONS | while read -r tg fs op; do printf 'M\t%s\t%s\t%s\n' "$tg" "$fs" "$op"; done
tail -n +2 /proc/swaps | while read -r p rest; do printf 'S\t%s\t%s\n' "$p" "$(lsblk -dno MAJ:MIN "$p" 2>/dev/null | tr -d ' ')"; done
printf 'CODES\t'; sgdisk -L 2>/dev/null | tr '\n' '|'; echo
for m in /dev/md[0-9]*; do case $m in *p[0-9]*) continue ;; esac; [ -b "$m" ] || continue; printf 'MD\t%s\t' "$m"; mdadm --detail --export "$m" 2>/dev/null | tr '\n' '|'; echo; done
command -v zpool >/dev/null 2>&1 && zpool list -H -o name 2>/dev/null | sed 's/^/Z\t/'
`)
	for id, p := range e.devs {
		kind, val := resolveArgs(p)
		fmt.Fprintf(&b, "conf_dev %d %s %s %s\n", id, kind, q(val), q(p))
	}
	for i, g := range e.gpts {
		kind, val := resolveArgs(g.Device)
		fmt.Fprintf(&b, "conf_dev g%d %s %s %s >/dev/null\n", i, kind, q(val), q(g.Device))
		for _, p := range g.Partitions {
			fmt.Fprintf(&b, "printf 'P\\t%d\\t%d\\t'; [ -n \"$r\" ] && sgdisk -i %d \"$r\" 2>&1 | tr '\\n' '|'; echo\n", i, p.Index, p.Index)
		}
	}
	for i, l := range e.luks {
		kind, val := resolveArgs(l.Device)
		fmt.Fprintf(&b, "conf_dev l%d %s %s %s >/dev/null\n", i, kind, q(val), q(l.Device))
		fmt.Fprintf(&b, `il=0; lu=; [ -n "$r" ] && cryptsetup isLuks "$r" && il=1 && lu=$(cryptsetup luksUUID "$r")
act=0; sd=; if cryptsetup status %[2]s >/dev/null 2>&1; then act=1; sd=$(cryptsetup status %[2]s | sed -n 's/^ *device: *//p'); sd=$(lsblk -dno MAJ:MIN "$sd" 2>/dev/null | tr -d ' '); fi
printf 'L\t%[1]d\t%%s\t%%s\t%%s\t%%s\n' "$il" "$lu" "$act" "$sd"
`, i, q(l.Name))
		if keys {
			for j, k := range l.AdditionalKeyFiles {
				fmt.Fprintf(&b, "if [ -n \"$r\" ] && cryptsetup open --test-passphrase --key-file %s \"$r\" >/dev/null 2>&1; then printf 'K\\t%d\\t%d\\tok\\n'; else printf 'K\\t%d\\t%d\\tfail\\n'; fi\n", q(k), i, j, i, j)
			}
		}
	}
	for _, v := range e.vgs {
		fmt.Fprintf(&b, "vgs --noheadings --nosuffix --units b --separator '|' -o vg_name,vg_uuid,vg_extent_size %s 2>/dev/null | sed 's/^ */V\\t/'\n", q(v.Name))
		fmt.Fprintf(&b, "lvs --noheadings --nosuffix --units b --separator '|' -o vg_name,lv_name,lv_size,segtype,lv_uuid,lv_attr,pool_lv %s 2>/dev/null | sed 's/^ */LV\\t/'\n", q(v.Name))
	}
	if mounted {
		for i, m := range e.mounts {
			t := q(e.target(m.mp))
			fmt.Fprintf(&b, "s=$(findmnt -rn -o SOURCE -M %s | tail -n1); s=${s%%%%\\[*}; printf 'F\\t%d\\t%%s\\t%%s\\n' \"$s\" \"$(blkid -p -o value -s UUID \"$s\" 2>/dev/null)\"\n", t, i)
			if m.marker {
				fmt.Fprintf(&b, "printf 'X\\t%d\\t%%s\\n' \"$(cat %s 2>/dev/null)\"\n", i, q(e.target(m.mp)+"/"+markerName))
			}
		}
		for i, f := range e.files {
			fmt.Fprintf(&b, "printf 'W\\t%d\\t%%s\\n' \"$(blkid -p -o value -s TYPE %s 2>/dev/null)\"\n", i, q(e.target(f)))
		}
		for i, x := range e.btrfs {
			kind, val := resolveArgs(x.Device)
			fmt.Fprintf(&b, `conf_dev b%d %s %s %s >/dev/null
t=$(mktemp -d); if [ -z "$r" ]; then :; elif err=$(mount -o subvol=/ "$r" "$t" 2>&1); then btrfs subvolume list "$t" | sed -n 's/^.* path //p' | while read -r p; do printf 'B\t%d\t%%s\n' "$p"; done; umount "$t"; else printf 'BERR\t%d\t%%s\n' "$(echo $err)"; fi; rmdir "$t"
`, i, kind, q(val), q(x.Device), i, i)
		}
	}
	return b.String()
}

// markerScript writes a marker file into every mounted block filesystem.
func (e *expect) markerScript(token string) string {
	var b strings.Builder
	for _, m := range e.mounts {
		if m.marker {
			fmt.Fprintf(&b, "printf %%s %s > %s\n", target.ShellQuote(token), target.ShellQuote(e.target(m.mp)+"/"+markerName))
		}
	}
	return b.String()
}

// state is the parsed probe output.
type state struct {
	mounts   map[string]gotMount // target -> topmost mount
	swaps    map[string]bool     // /proc/swaps paths and MAJ:MIN
	codes    map[string]string   // sgdisk type code -> (truncated) name
	mds      []map[string]string // mdadm --detail --export of each array
	zpools   map[string]bool
	devs     map[string][]string // id -> resolved, MAJ:MIN, TYPE, UUID
	parts    map[string]map[string]string
	luks     map[string][]string // index -> isLuks, UUID, active, device MAJ:MIN
	keys     map[string]string
	vgs      map[string][]string // name -> uuid, extent size
	lvs      map[string][]string // vg/lv -> size, segtype, uuid, attr, pool
	sources  map[string][]string // mount index -> source, UUID
	markers  map[string]string
	swapType map[string]string
	subvols  map[string]map[string]bool
	btrfsErr map[string]string // btrfs index -> why its top level could not be mounted
}

type gotMount struct {
	fstype string
	opts   []string
}

var codeRe = regexp.MustCompile(`([0-9a-fA-F]{4}) (\S.*?)(?:\s{2,}|$)`)

func unescapeMount(s string) string {
	return udevUnescape(strings.ReplaceAll(s, `\040`, " "))
}

func parseState(out string) *state {
	s := &state{mounts: map[string]gotMount{}, swaps: map[string]bool{}, codes: map[string]string{}, zpools: map[string]bool{},
		devs: map[string][]string{}, parts: map[string]map[string]string{}, luks: map[string][]string{}, keys: map[string]string{},
		vgs: map[string][]string{}, lvs: map[string][]string{}, sources: map[string][]string{}, markers: map[string]string{},
		swapType: map[string]string{}, subvols: map[string]map[string]bool{}, btrfsErr: map[string]string{}}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		switch {
		case f[0] == "M" && len(f) == 4:
			s.mounts[unescapeMount(f[1])] = gotMount{fstype: f[2], opts: strings.Split(f[3], ",")}
		case f[0] == "S" && len(f) == 3:
			s.swaps[unescapeMount(f[1])] = true
			if f[2] != "" {
				s.swaps[f[2]] = true
			}
		case f[0] == "CODES" && len(f) == 2:
			for _, l := range strings.Split(f[1], "|") {
				for _, m := range codeRe.FindAllStringSubmatch(l, -1) {
					s.codes[strings.ToUpper(m[1])] = strings.TrimSpace(m[2])
				}
			}
		case f[0] == "MD" && len(f) == 3:
			m := map[string]string{"dev": f[1]}
			for _, kv := range strings.Split(f[2], "|") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					m[k] = v
				}
			}
			s.mds = append(s.mds, m)
		case f[0] == "Z" && len(f) == 2:
			s.zpools[f[1]] = true
		case f[0] == "D" && len(f) == 6:
			s.devs[f[1]] = f[2:]
		case f[0] == "P" && len(f) == 4:
			s.parts[f[1]+"#"+f[2]] = parseSgdiskInfo(f[3])
		case f[0] == "L" && len(f) == 6:
			s.luks[f[1]] = f[2:]
		case f[0] == "K" && len(f) == 4:
			s.keys[f[1]+"#"+f[2]] = f[3]
		case f[0] == "V" && len(f) == 2:
			v := strings.Split(strings.TrimSpace(f[1]), "|")
			if len(v) == 3 {
				s.vgs[v[0]] = v[1:]
			}
		case f[0] == "LV" && len(f) == 2:
			v := strings.Split(strings.TrimSpace(f[1]), "|")
			if len(v) == 7 {
				s.lvs[v[0]+"/"+v[1]] = v[2:]
			}
		case f[0] == "F" && len(f) == 4:
			s.sources[f[1]] = f[2:]
		case f[0] == "X" && len(f) == 3:
			s.markers[f[1]] = f[2]
		case f[0] == "W" && len(f) == 3:
			s.swapType[f[1]] = f[2]
		case f[0] == "BERR" && len(f) == 3:
			s.btrfsErr[f[1]] = f[2]
		case f[0] == "B" && len(f) == 3:
			if s.subvols[f[1]] == nil {
				s.subvols[f[1]] = map[string]bool{}
			}
			s.subvols[f[1]][f[2]] = true
		}
	}
	return s
}

// parseSgdiskInfo reads `sgdisk -i N` ("Key: value" lines joined by |).
func parseSgdiskInfo(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "|") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			m[k] = strings.TrimSpace(v)
		}
		if strings.Contains(l, "does not exist") {
			m["missing"] = l
		}
	}
	return m
}
