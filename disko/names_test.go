package disko

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// partEntryName is the raw GPT name blkid reads from the entry of dev
// (-o value prints it unescaped; -o export would escape blanks).
func partEntryName(t *testing.T, dev string) string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-s", "PART_ENTRY_NAME", "-o", "value", dev).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 {
			return "" // no such tag
		}
		t.Fatalf("blkid -p -s PART_ENTRY_NAME %s: %v", dev, err)
	}
	return strings.TrimSuffix(string(out), "\n")
}

// Names with blanks, quotes, backslashes and non-ASCII characters go to
// the disk through sgdisk or parted and are found again by the script:
// the partition gets the expected name, is formatted and mounted, in a
// destroy,format,mount / unmount / mount / format cycle. With parted, the
// entry holds disko's escaped text (a legacy table used to wait for the
// unescaped name until it timed out: "device not found").
func TestExecPartitionNames(t *testing.T) {
	type part struct {
		n        int
		name     string // GPT name on disk; "-" for msdos (no names)
		mountDir string
	}
	tests := []struct {
		file   string
		pttype string
		parts  []part
	}{
		{"names-gpt.json", "gpt", []part{
			{1, `disk-main-back\slash`, `/back\slash`},
			{2, "disk-main-héllo€", "/héllo€"},
			{3, "disk-main-name with spaces", "/name with spaces"},
			{4, `disk-main-q"u'o`, `/q"u'o`},
			{5, "disk-main-root", "/"},
		}},
		{"names-table-gpt.json", "gpt", []part{
			{1, `name\x20with\x20spaces`, "/name with spaces"},
			{2, `q\x22u\x27o`, `/q"u'o`},
			{3, `back\x5Cslash`, `/back\slash`},
			{4, `h\xC3\xA9llo\xE2\x82\xAC`, "/héllo€"},
			{5, "", "/unnamed"},
			{6, `a\x20long\x20name\x20with\x20many\x2`, "/long"},
			{7, "root", "/"},
		}},
		{"names-table-msdos.json", "dos", []part{
			{1, "-", "/name with spaces"},
			{2, "-", `/q"u'o`},
			{3, "-", `/back\slash héllo€`},
			{4, "-", "/"},
		}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".json"), func(t *testing.T) {
			tools := []string{"mkfs.ext4"}
			if strings.Contains(tt.file, "table") {
				tools = append(tools, "parted")
			}
			skipUnlessReady(t, requirement{tools: tools, fs: []string{"ext4"}})
			r := newRig(t, tt.file, 1, 160, nil)
			r.cycle(func() {
				if got := blkidProbe(r.loops[0])["PTTYPE"]; got != tt.pttype {
					t.Errorf("partition table %q, want %q", got, tt.pttype)
				}
				for _, p := range tt.parts {
					dev := r.part(0, p.n)
					if p.name != "-" {
						if got := partEntryName(t, dev); got != p.name {
							t.Errorf("partition %d: GPT name %q, want %q", p.n, got, p.name)
						}
					}
					if got := blkidProbe(dev)["TYPE"]; got != "ext4" {
						t.Errorf("partition %d: signature %q, want ext4", p.n, got)
					}
					r.expectMount(p.mountDir, "ext4", dev)
				}
			})
		})
	}
}

// shellWords splits a line of the rendered script into words: bare,
// '…' (with '\” inside) and "…" (kept as written, inner text unparsed).
func shellWords(line string) []string {
	var out []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
			continue
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				j = len(line) - i - 1
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				j = len(line) - i - 1
			}
			cur.WriteString(line[i:min(len(line), i+j+2)])
			i += j + 1
		default:
			cur.WriteByte(c)
		}
		in = true
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// partedStores is the partition name parted makes of one mkpart argument,
// as observed (the exec test checks it on disk): blanks outside quotes end
// the name, quotes are dropped, a backslash escapes the next character
// only inside quotes, and a GPT entry keeps 36 characters.
func partedStores(arg string) string {
	var b strings.Builder
	var quote byte
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		switch {
		case quote == 0 && c == ' ':
			i = len(arg)
			continue
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
			continue
		case quote != 0 && c == quote:
			quote = 0
			continue
		case quote != 0 && c == '\\' && i+1 < len(arg):
			i++
			c = arg[i]
		}
		b.WriteByte(c)
	}
	s := b.String()
	if len(s) > 36 {
		s = s[:36]
	}
	return s
}

// The script looks a partition up under the very name the partitioning
// command writes: sgdisk stores the label as given (up to a ':', which
// Parse refuses), parted the escaped mkpart word; the by-partlabel link is
// the name as udev escapes it.
func TestRenderedLookupUsesWrittenName(t *testing.T) {
	tests := []struct {
		file      string
		wantNames []string // names on disk by partition number
		wantLinks []string // by-partlabel links (gpt only)
	}{
		{"names-gpt.json", []string{
			`disk-main-back\slash`, "disk-main-héllo€", "disk-main-name with spaces", `disk-main-q"u'o`, "disk-main-root",
		}, []string{
			`/dev/disk/by-partlabel/disk-main-back\x5cslash`,
			"/dev/disk/by-partlabel/disk-main-héllo€",
			`/dev/disk/by-partlabel/disk-main-name\x20with\x20spaces`,
			`/dev/disk/by-partlabel/disk-main-q\x22u\x27o`,
			"/dev/disk/by-partlabel/disk-main-root",
		}},
		{"names-table-gpt.json", []string{
			`name\x20with\x20spaces`, `q\x22u\x27o`, `back\x5Cslash`, `h\xC3\xA9llo\xE2\x82\xAC`, "",
			`a\x20long\x20name\x20with\x20many\x2`, "root",
		}, nil},
		{"names-table-msdos.json", []string{"", "", "", ""}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			l := parseExecLayout(t, tt.file)
			script, err := l.Script(ModeFormat, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var written []string
			looked := map[string]string{}
			_, body, _ := strings.Cut(script, "# --- end of helpers")
			for _, line := range strings.Split(body, "\n") {
				w := shellWords(strings.TrimSpace(line))
				if len(w) < 2 {
					continue
				}
				switch {
				case w[0] == "disko_run" && w[1] == "sgdisk" && w[2] == "--align-end":
					for _, a := range w {
						if v, ok := strings.CutPrefix(a, "--change-name="); ok {
							_, name, _ := strings.Cut(v, ":")
							name, _, _ = strings.Cut(name, ":") // sgdisk ends the name at a colon
							written = append(written, name)
						}
					}
				case w[0] == "disko_run" && w[1] == "parted":
					for i, a := range w {
						if a == "mkpart" {
							if strings.Contains(l.Disks[0].Content.(*Table).Format, "msdos") {
								written = append(written, "")
							} else {
								written = append(written, partedStores(w[i+1]))
							}
						}
					}
				}
				for i, a := range w {
					if strings.Contains(a, "disko_part") && i+1 < len(w) {
						// disko_dN=$(disko_part CANONICAL "$(disko_dev DISK)" N NAME UUID)
						looked[w[i+3]] = w[i+4]
					}
				}
			}
			if strings.Join(written, "\n") != strings.Join(tt.wantNames, "\n") {
				t.Errorf("names written:\n%q\nwant:\n%q", written, tt.wantNames)
			}
			if len(looked) != len(written) {
				t.Errorf("lookups of %d partitions, want %d: %q", len(looked), len(written), looked)
			}
			for i, name := range written {
				if got, want := looked[strconv.Itoa(i+1)], name; got != want {
					t.Errorf("partition %d: the script looks for the name %q, the tool writes %q", i+1, got, want)
				}
			}
			if tt.wantLinks != nil {
				var links []string
				for _, p := range l.Disks[0].Content.(*GPT).Partitions {
					links = append(links, p.Device)
					if !strings.Contains(script, "disko_part "+shq(p.Device)+" ") {
						t.Errorf("the script never tries the link %s", p.Device)
					}
				}
				if strings.Join(links, "\n") != strings.Join(tt.wantLinks, "\n") {
					t.Errorf("by-partlabel links:\n%s\nwant:\n%s", strings.Join(links, "\n"), strings.Join(tt.wantLinks, "\n"))
				}
			}
		})
	}
}

func parseExecLayout(t *testing.T, file string) *Layout {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "exec", file))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(%s): %v", file, err)
	}
	return l
}

// udevEscape gives the link names udev makes: libblkid's encoding, with
// lower-case hex, multi-byte UTF-8 kept, a backslash and '/' escaped.
func TestUdevEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"disk-main-root", "disk-main-root"},
		{"disk-vdb-name with spaces", `disk-vdb-name\x20with\x20spaces`},
		{"a^b", `a\x5eb`},
		{`back\slash`, `back\x5cslash`},
		{`q"u'o`, `q\x22u\x27o`},
		{"a/b", `a\x2fb`},
		{"héllo€", "héllo€"},
		{"bad\xffbyte", `bad\xffbyte`},
		{"#+-.:=@_", "#+-.:=@_"},
		{"$(id)", `\x24\x28id\x29`},
	}
	for _, tt := range tests {
		if got := udevEscape(tt.in); got != tt.want {
			t.Errorf("udevEscape(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Names a tool would cut, reject or store under another /dev name are
// refused with the JSON path of the name.
func TestParseRefusesNamesToolsChange(t *testing.T) {
	gpt := func(name, extra string) string {
		return `{"disk":{"main":{"device":"/dev/vda","content":{"type":"gpt","partitions":{"` + name + `":{"size":"100%"` + extra + `}}}}}}`
	}
	luksLVM := func(luks, vg, lv string) string {
		return `{"disk":{"main":{"device":"/dev/vda","content":{"type":"luks","name":"` + luks + `","passwordFile":"/tmp/pw","content":{"type":"lvm_pv","vg":"pool"}}}},` +
			`"lvm_vg":{"pool":{"type":"lvm_vg","name":"` + vg + `","lvs":{"root":{"name":"` + lv + `","size":"100%FREE"}}}}}`
	}
	md := func(name string) string {
		return `{"disk":{"a":{"device":"/dev/vda","content":{"type":"mdraid","name":"r"}}},"mdadm":{"r":{"name":"` + name + `","level":1}}}`
	}
	tests := []struct {
		name, layout, want string
	}{
		{"colon in a gpt label", gpt("a:b", ""), `disk.main.content.partitions.a:b.name: label "disk-main-a:b" holds a ':'`},
		{"colon in an explicit label", gpt("root", `,"label":"x:y"`), `disk.main.content.partitions.root.label: label "x:y" holds a ':'`},
		{"label too long", gpt("root", `,"label":"0123456789012345678901234567890123456"`), `longer than the 36 characters`},
		{"blank in a VG name", luksLVM("crypted", "my pool", "root"), `lvm_vg.pool.name: volume group name "my pool"`},
		{"quote in an LV name", luksLVM("crypted", "pool", `r\"t`), `lvm_vg.pool.lvs.root.name: LV name "r\"t"`},
		{"blank in a LUKS name", luksLVM("my disk", "pool", "root"), `disk.main.content.name: LUKS name "my disk"`},
		{"slash in a LUKS name", luksLVM("a/b", "pool", "root"), `LUKS name "a/b"`},
		{"blank in an md name", md("my raid"), `mdadm.r.name: mdadm array name "my raid"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.layout))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, tt.want)
			}
		})
	}
	// Names with every character the tools keep still parse.
	for _, ok := range []string{gpt("héllo €", ""), luksLVM("crypt#1:x=y@z", "vg.0+_-", "lv.0+_-"), md("raid_1.0-x")} {
		if _, err := Parse([]byte(ok)); err != nil {
			t.Errorf("Parse(%s): %v", ok, err)
		}
	}
}
