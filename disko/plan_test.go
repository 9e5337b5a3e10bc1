package disko

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// shellFields splits a command line the way sh would for simple words:
// single and double quotes group, backslash escapes $ ` " \ inside double
// quotes.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				j = len(s) - i - 1
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

var (
	lineNumRe      = regexp.MustCompile(`^\s*\d+\.\s+`)
	passwordFileRe = regexp.MustCompile(`<\(set \+x; echo -n "\$\(cat (\S+?)\)"; set -x\)`)
	raidDevicesRe  = regexp.MustCompile(`--raid-devices="\$\(wc -l "\$disko_devices_dir"/(\S+) \| cut -f 1 -d " "\)"`)
	arrayFileRe    = regexp.MustCompile(`"\$disko_devices_dir"/(\S+?)\)`)
	recordRe       = regexp.MustCompile(`^record (.*) in \$disko_devices_dir/(\S+)$`)
	recordLinesRe  = regexp.MustCompile(`^record lines (.*) in \$disko_devices_dir/(\S+)$`)
	loadLinesRe    = regexp.MustCompile(`^load every recorded line of \$disko_devices_dir/(\S+) `)
	mkdirParentRe  = regexp.MustCompile(`^mkdir -p \(parent directory of (.*)\)$`)
)

// expectCommands turns an expect.md command list into normalised command
// strings: guards dropped, disko's member files expanded to the members
// they collect, partprobe/udevadm sequences reduced to "settle DEV".
func expectCommands(t *testing.T, body string) []string {
	t.Helper()
	records := map[string][]string{}
	cur := ""
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !lineNumRe.MatchString(line) {
			continue
		}
		s := lineNumRe.ReplaceAllString(line, "")
		if strings.HasPrefix(s, "[") {
			if i := strings.Index(s, "] "); i >= 0 {
				s = s[i+2:]
			}
		}
		s = strings.TrimSpace(s)
		for _, suf := range []string{"(†)", "(‡)", ";"} {
			s = strings.TrimSpace(strings.TrimSuffix(s, suf))
		}
		if m := recordLinesRe.FindStringSubmatch(s); m != nil {
			records[m[2]] = append(records[m[2]], strings.Split(m[1], " | ")...)
			continue
		}
		if m := recordRe.FindStringSubmatch(s); m != nil {
			records[m[2]] = append(records[m[2]], m[1])
			continue
		}
		if strings.HasPrefix(s, "readarray") {
			cur = arrayFileRe.FindStringSubmatch(s)[1]
			continue
		}
		if m := loadLinesRe.FindStringSubmatch(s); m != nil {
			cur = m[1]
			continue
		}
		if strings.Contains(s, "members (collection order)") || strings.HasPrefix(s, "skip creation if") || strings.HasPrefix(s, "print ") {
			continue
		}
		switch {
		case strings.HasPrefix(s, "partprobe "):
			out = append(out, "settle "+shellFields(strings.Split(s, ";")[0])[1])
			continue
		case strings.HasPrefix(s, "udevadm trigger"):
			out = append(out, "settle")
			continue
		}
		s = strings.TrimPrefix(s, "echo 'y' | ")
		if m := mkdirParentRe.FindStringSubmatch(s); m != nil {
			out = append(out, "mkdir -p dirname "+m[1])
			continue
		}
		if strings.HasPrefix(s, "zpool list ") && strings.Contains(s, " || ") {
			s = s[strings.Index(s, " || ")+4:]
		}
		s = passwordFileRe.ReplaceAllString(s, "@passwordfile:$1")
		s = raidDevicesRe.ReplaceAllStringFunc(s, func(m string) string {
			return fmt.Sprintf("--raid-devices=%d", len(records[raidDevicesRe.FindStringSubmatch(m)[1]]))
		})
		if strings.Contains(s, " | ") || strings.Contains(s, " || ") {
			out = append(out, s) // a user hook: compared as text
			continue
		}
		var words []string
		fields := shellFields(s)
		for i := 0; i < len(fields); i++ {
			f := fields[i]
			switch {
			case f == "${disk_devices[@]}" || f == "${lvm_devices[@]}" || f == "$@":
				words = append(words, records[cur]...)
			case f == "-o" && i+1 < len(fields) && fields[i+1] == "X-mount.mkdir" && !strings.Contains(s, "bcachefs"):
				i++ // we mkdir -p the target instead (busybox mount lacks X-mount.mkdir)
			default:
				words = append(words, f)
			}
		}
		out = append(out, strings.Join(words, " "))
	}
	return out
}

// planCommands are the normalised commands of a plan that have a
// counterpart in disko (steps that exist only to fix upstream bugs are
// left out and tested on their own).
func planCommands(p *Plan) []string {
	var out []string
	for _, s := range p.Steps {
		if s.extra || s.Argv == nil {
			continue
		}
		argv := s.Argv
		if argv[0] == "vgchange" && len(argv) == 4 {
			argv = argv[:3] // we name the VG; disko (de)activates every VG
		}
		out = append(out, strings.Join(argv, " "))
	}
	return out
}

// fixedUpstream maps expected (buggy) upstream commands to what the
// renderer does instead, per case.
var fixedUpstream = map[string]map[string]string{
	"13-zfs-datasets": {
		// disko §5.5: the encrypted zvol's key is loaded/unloaded by its short name.
		"zfs load-key zfs_encryptedvolume":   "zfs load-key zroot/zfs_encryptedvolume",
		"zfs unload-key zfs_encryptedvolume": "zfs unload-key zroot/zfs_encryptedvolume",
	},
}

func TestPlanMatchesDiskoOrder(t *testing.T) {
	sections := []struct {
		title string
		mode  Mode
	}{
		{"Format", ModeFormat},
		{"Mount", ModeMount},
		{"Unmount", ModeUnmount},
	}
	for _, c := range loadCases(t) {
		l, err := Parse(c.raw)
		if err != nil {
			t.Fatalf("%s: Parse: %v", c.name, err)
		}
		for _, sec := range sections {
			t.Run(c.name+"/"+sec.title, func(t *testing.T) {
				want := expectCommands(t, expectBlock(c.expect, sec.title+" (`_"))
				for i, w := range want {
					if r, ok := fixedUpstream[c.name][w]; ok {
						want[i] = r
					}
				}
				p, err := l.Plan(sec.mode, RenderOptions{})
				if err != nil {
					t.Fatalf("Plan: %v", err)
				}
				got := planCommands(p)
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s commands differ from disko's\n%s", sec.title, lineDiff(got, want))
				}
			})
		}
	}
}

func lineDiff(got, want []string) string {
	var b strings.Builder
	n := max(len(got), len(want))
	for i := 0; i < n; i++ {
		g, w := "<none>", "<none>"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		mark := "  "
		if g != w {
			mark = "!="
		}
		fmt.Fprintf(&b, "%s %2d got:  %s\n         want: %s\n", mark, i+1, g, w)
	}
	return b.String()
}

var destroyListRe = regexp.MustCompile("`(/[^`]+)`")

func TestWipeTargetsMatchDisko(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.name, func(t *testing.T) {
			l, err := Parse(c.raw)
			if err != nil {
				t.Fatal(err)
			}
			sec := expectSection(c.expect, "Destroy")
			sec = sec[strings.Index(sec, "disk-deactivate"):]
			var want []string
			for _, m := range destroyListRe.FindAllStringSubmatch(sec, -1) {
				want = append(want, m[1])
			}
			var got []string
			for _, w := range l.WipeTargets() {
				got = append(got, w.Device)
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("wipe targets: got %v, want %v", got, want)
			}
			p, err := l.Plan(ModeDestroy, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var deact []string
			for _, s := range p.Steps {
				if len(s.Argv) == 2 && s.Argv[0] == "disk-deactivate" {
					deact = append(deact, s.Argv[1])
				}
			}
			if strings.Join(deact, " ") != strings.Join(want, " ") {
				t.Errorf("destroy plan wipes %v, want %v", deact, want)
			}
		})
	}
}
