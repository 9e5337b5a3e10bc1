package disko

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Needs is what a rendered script needs on the target before anything
// destructive runs; see (*Layout).Needs.
type Needs struct {
	// Tools are the external commands the script calls, sorted: those of
	// its steps and of the helpers they use (blkid, sgdisk, parted,
	// mkfs.ext4, cryptsetup, lvcreate, mdadm, zpool, … and the basic
	// ones: awk, cat, readlink, sed, …). Tools a helper only uses when
	// present (udevadm, zvol_wait) are left out, and so are commands in
	// user hooks. The destroy modes tear down whatever the disks hold; the
	// tools for LVM, md, device-mapper and ZFS found there are listed when
	// the layout itself uses that kind (a re-install usually finds the
	// previous install of the same layout).
	Tools []string
	// KeyFiles are the key and password files LUKS containers read, in
	// layout order: the key source cryptsetup uses (settings.keyFile,
	// passwordFile or the deprecated keyFile) and, in the format modes,
	// each of additionalKeyFiles. The script stops if one is missing or
	// empty.
	KeyFiles []KeyFile
	// Passphrases are the names of the LUKS containers whose passphrase
	// the script asks for on the terminal (askPassword, the default when
	// no key source is set, unless settings.keyFile is set), in layout
	// order, in the modes that format or mount.
	Passphrases []string
	// DiskMinBytes is, per disk (attr name, as disk.<name>), the smallest
	// size its partition table fits on: the fixed sizes and positions of
	// its partitions, the space negative ends keep free, 1 MiB before the
	// first partition (alignment) and 1 MiB for the backup GPT. Sizes in
	// percent and 100% partitions count as nothing. A disk without a
	// partition table needs 0.
	DiskMinBytes map[string]int64
	// Names are the device-mapper, md and LVM names the script creates
	// (LUKS containers, mdadm arrays, volume groups), in the modes that
	// format: one already in use on the host on a disk the layout does
	// not erase stops the script after the wipe.
	Names []DeviceName
}

// DeviceName is a name the script gives a device it creates.
type DeviceName struct {
	Kind     string // "LUKS container", "mdadm array" or "volume group"
	Name     string
	Dev      string // the device node the name takes; "" for a volume group
	JSONPath string // where the layout names it
}

// KeyFile is a file the script reads key material from.
type KeyFile struct {
	Path     string // path on the target
	JSONPath string // where the layout names it
}

// Needs lists what the script of mode needs on the target. Tools come
// from the rendered script itself (the commands in its steps and the
// helpers they call), so they follow the renderer.
func (l *Layout) Needs(mode Mode) (Needs, error) {
	p, err := l.Plan(mode, RenderOptions{})
	if err != nil {
		return Needs{}, fmt.Errorf("needs of mode %s: %w", mode, err)
	}
	var body strings.Builder
	for _, s := range p.Steps {
		if isHookStep(s) {
			continue
		}
		body.WriteString(s.shell)
		body.WriteString("\n")
	}
	n := Needs{DiskMinBytes: map[string]int64{}}
	n.Tools = l.scriptTools(body.String())

	b := &builder{l: l, mode: mode}
	if mode.formats() || mode.mounts() {
		l.eachContent(func(_ Device, c Content) {
			x, ok := c.(*LUKS)
			if !ok {
				return
			}
			k := b.luksKey(x)
			if k.ask {
				n.Passphrases = append(n.Passphrases, x.Name)
			}
			if k.file != "" {
				n.KeyFiles = append(n.KeyFiles, KeyFile{Path: k.file, JSONPath: k.filePath})
			}
			if mode.formats() {
				for i, f := range x.AdditionalKeyFiles {
					n.KeyFiles = append(n.KeyFiles, KeyFile{Path: f, JSONPath: indexPath(joinPath(x.Path, "additionalKeyFiles"), i)})
				}
			}
		})
		if len(b.errors) > 0 {
			return Needs{}, fmt.Errorf("needs of mode %s: %s", mode, strings.Join(b.errors, "; "))
		}
	}
	if mode.formats() {
		n.Names = l.deviceNames()
	}
	for _, d := range l.Disks {
		min, err := diskMinBytes(d)
		if err != nil {
			return Needs{}, fmt.Errorf("needs of mode %s: %w", mode, err)
		}
		n.DiskMinBytes[d.Attr] = min
	}
	return n, nil
}

// deviceNames lists the names the layout's LUKS containers, mdadm arrays
// and volume groups take on the host, in layout order.
func (l *Layout) deviceNames() []DeviceName {
	var names []DeviceName
	l.eachContent(func(_ Device, c Content) {
		if x, ok := c.(*LUKS); ok {
			names = append(names, DeviceName{Kind: "LUKS container", Name: x.Name, Dev: x.MapperPath(), JSONPath: x.JSONPath()})
		}
	})
	for _, a := range l.MDArrays {
		names = append(names, DeviceName{Kind: "mdadm array", Name: a.Name, Dev: a.DevPath(), JSONPath: a.JSONPath()})
	}
	for _, v := range l.VGs {
		names = append(names, DeviceName{Kind: "volume group", Name: v.Name, JSONPath: v.JSONPath()})
	}
	return names
}

func isHookStep(s Step) bool { return strings.HasSuffix(s.Guard, "Hook") }

// ---------------------------------------------------------------- tools

// shBuiltins are the commands dash, bash and busybox sh run themselves.
var shBuiltins = map[string]bool{}

func init() {
	for _, b := range strings.Fields(`: . [ alias bg break cd command continue echo eval exec exit export
		false fg getopts hash jobs kill local printf pwd read readonly return set shift test times
		trap true type ulimit umask unalias unset wait`) {
		shBuiltins[b] = true
	}
}

// teardownKinds: the commands disko_teardown runs only for what it finds
// on a disk, by the layout kind that puts it there.
var teardownKinds = map[string][]string{
	"pvs": {"lvm"}, "vgchange": {"lvm"}, "vgremove": {"lvm"},
	"cryptsetup": {"luks"}, "dmsetup": {"lvm", "luks"}, "mdadm": {"md"}, "zpool": {"zfs"},
}

// preludeFunc is one helper of prelude.sh: the commands it calls and the
// tools it only uses after `disko_has TOOL`.
type preludeFunc struct {
	calls    []string
	optional map[string]bool
}

var preludeFuncRe = regexp.MustCompile(`(?m)^([a-z_]+)\(\) \{(.*)$`)

// preludeFuncs splits prelude.sh into its functions and scans each.
func preludeFuncs() map[string]preludeFunc {
	out := map[string]preludeFunc{}
	lines := strings.Split(prelude, "\n")
	for i := 0; i < len(lines); i++ {
		m := preludeFuncRe.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		var text string
		if rest := strings.TrimSpace(m[2]); strings.HasSuffix(rest, "}") {
			text = strings.TrimSuffix(rest, "}")
		} else {
			j := i + 1
			for j < len(lines) && lines[j] != "}" {
				j++
			}
			text = strings.Join(lines[i+1:j], "\n")
			i = j
		}
		sc := scanShell(text)
		out[m[1]] = preludeFunc{calls: sc.commands, optional: sc.probed}
	}
	return out
}

// scriptTools are the external commands of body and of the prelude
// helpers it calls, transitively.
func (l *Layout) scriptTools(body string) []string {
	funcs := preludeFuncs()
	kinds := l.kinds()
	tools := map[string]bool{}
	seen := map[string]bool{}
	var visit func(fn string, calls []string, optional map[string]bool)
	visit = func(fn string, calls []string, optional map[string]bool) {
		for _, c := range calls {
			if f, ok := funcs[c]; ok {
				if !seen[c] {
					seen[c] = true
					visit(c, f.calls, f.optional)
				}
				continue
			}
			if shBuiltins[c] || optional[c] {
				continue
			}
			if fn == "disko_teardown" && teardownKinds[c] != nil {
				use := false
				for _, k := range teardownKinds[c] {
					use = use || kinds[k]
				}
				if !use {
					continue
				}
			}
			tools[c] = true
		}
	}
	// The prelude's own top-level code runs too.
	visit("", scanShell(preludeTopLevel()).commands, nil)
	sc := scanShell(body)
	visit("", sc.commands, sc.probed)
	out := make([]string, 0, len(tools))
	for t := range tools {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// preludeTopLevel is prelude.sh without its function definitions.
func preludeTopLevel() string {
	var sb strings.Builder
	lines := strings.Split(prelude, "\n")
	for i := 0; i < len(lines); i++ {
		if m := preludeFuncRe.FindStringSubmatch(lines[i]); m != nil {
			if !strings.HasSuffix(strings.TrimSpace(m[2]), "}") {
				for i < len(lines) && lines[i] != "}" {
					i++
				}
			}
			continue
		}
		sb.WriteString(lines[i])
		sb.WriteString("\n")
	}
	return sb.String()
}

// kinds says which of lvm, luks, md and zfs the layout uses.
func (l *Layout) kinds() map[string]bool {
	k := map[string]bool{"lvm": len(l.VGs) > 0, "md": len(l.MDArrays) > 0, "zfs": len(l.Zpools) > 0}
	l.eachContent(func(_ Device, c Content) {
		if _, ok := c.(*LUKS); ok {
			k["luks"] = true
		}
	})
	return k
}

// shellScan is what scanShell found: the literal names in command position
// (in order, repeated) and the names tested with disko_has.
type shellScan struct {
	commands []string
	probed   map[string]bool
}

// scanShell finds the command names of POSIX sh text: words in command
// position (after a newline, ; | & && || ( { !, then do else elif if while
// until, assignments, and disko_run), also inside $(…) and "$(…)", trap
// strings and case branches. Quoted text, redirection targets, for lists,
// case words and patterns are not commands; names holding an expansion
// are skipped.
func scanShell(text string) shellScan {
	s := &shScanner{src: text, out: shellScan{probed: map[string]bool{}}}
	s.list(0)
	return s.out
}

type shScanner struct {
	src       string
	i         int
	out       shellScan
	lastValue string // the last word read, quotes removed
}

type shTok struct {
	kind    byte // 'w' word, 'n' newline, 'o' operator, 'r' redirection, 0 end
	text    string
	literal bool // a word without quotes or expansions
}

var shAssignRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// list scans commands until the end or, with close = ')', the ')' that
// ends a command substitution.
func (s *shScanner) list(close byte) {
	st := listState{cmdPos: true}
	for {
		t := s.next()
		switch t.kind {
		case 0:
			return
		case 'n':
			st.cmdPos, st.forWords, st.probeNext = true, false, false
		case 'r':
			s.next() // the redirection's target
		case 'o':
			if st.operator(t.text, close) {
				return
			}
		default:
			s.listWord(&st, t)
		}
	}
}

// listState is where list is in the grammar.
type listState struct {
	cmdPos    bool // the next word is in command position
	inCase    int
	pattern   bool // in a case, reading a pattern up to ')'
	caseWord  bool
	forWords  bool
	probeNext bool // the next word is disko_has's name
	depth     int  // subshells opened inside this list
}

// operator moves past an operator; true when it is the ')' that ends the
// list (close = ')').
func (st *listState) operator(op string, close byte) (end bool) {
	switch op {
	case ")":
		if st.pattern {
			st.pattern, st.cmdPos = false, true
			return false
		}
		if st.depth == 0 && close == ')' {
			return true
		}
		st.depth--
		st.cmdPos = false
	case "(":
		st.depth++
		st.cmdPos = true
	case ";;":
		if st.inCase > 0 {
			st.pattern = true
		}
		st.cmdPos = true
	default:
		st.cmdPos, st.forWords, st.probeNext = true, false, false
	}
	return false
}

// listWord takes a word: a case word or pattern, a for list's word,
// disko_has's name, a reserved word, an assignment or a command.
func (s *shScanner) listWord(st *listState, t shTok) {
	switch {
	case st.caseWord:
		if t.text == "in" {
			st.caseWord, st.pattern = false, true
		}
		return
	case st.pattern:
		if t.text == "esac" && t.literal {
			st.pattern = false
			st.inCase--
			st.cmdPos = false
		}
		return
	case st.forWords:
		return
	case st.probeNext:
		if t.literal {
			s.out.probed[t.text] = true
		}
		st.probeNext = false
		return
	case !st.cmdPos:
		return
	}
	if t.literal && st.reserved(t.text) {
		return
	}
	if shAssignRe.MatchString(t.text) {
		return
	}
	st.cmdPos = false
	if !t.literal || strings.HasPrefix(t.text, "-") {
		return // an expansion, or an option (command -v)
	}
	s.command(st, t.text)
}

// reserved moves past word if it is a reserved word (or ! and braces),
// saying whether it was.
func (st *listState) reserved(word string) bool {
	switch word {
	case "if", "then", "else", "elif", "do", "while", "until", "!", "{":
	case "fi", "done", "}":
		st.cmdPos = false
	case "esac":
		if st.inCase > 0 {
			st.inCase--
		}
		st.cmdPos = false
	case "case":
		st.inCase++
		st.caseWord = true
	case "for":
		st.forWords = true
	default:
		return false
	}
	return true
}

// command records the command name, then what it says of the words after
// it: disko_run, command and exec run the next word, disko_has probes it,
// trap's commands are scanned too.
func (s *shScanner) command(st *listState, name string) {
	s.out.commands = append(s.out.commands, name)
	switch name {
	case "disko_run", "command", "exec":
		st.cmdPos = true
	case "disko_has":
		st.probeNext = true
	case "trap":
		if a := s.next(); a.kind == 'w' { // the trap's commands
			sub := scanShell(s.lastValue)
			s.out.commands = append(s.out.commands, sub.commands...)
		}
	}
}

// next reads one token, scanning command substitutions inside words.
func (s *shScanner) next() shTok {
	for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t' || s.src[s.i] == '\\' && s.i+1 < len(s.src) && s.src[s.i+1] == '\n') {
		if s.src[s.i] == '\\' {
			s.i++
		}
		s.i++
	}
	if s.i >= len(s.src) {
		return shTok{}
	}
	c := s.src[s.i]
	switch {
	case c == '#':
		for s.i < len(s.src) && s.src[s.i] != '\n' {
			s.i++
		}
		return s.next()
	case c == '\n':
		s.i++
		return shTok{kind: 'n'}
	case c == ';' || c == '&' || c == '|':
		if s.i+1 < len(s.src) && s.src[s.i+1] == c {
			s.i += 2
			return shTok{kind: 'o', text: string([]byte{c, c})}
		}
		s.i++
		return shTok{kind: 'o', text: string(c)}
	case c == '(' || c == ')':
		s.i++
		return shTok{kind: 'o', text: string(c)}
	}
	// A redirection: [digits] < > <> >> >& <&.
	j := s.i
	for j < len(s.src) && s.src[j] >= '0' && s.src[j] <= '9' {
		j++
	}
	if j < len(s.src) && (s.src[j] == '<' || s.src[j] == '>') {
		j++
		for j < len(s.src) && strings.IndexByte("<>&|", s.src[j]) >= 0 {
			j++
		}
		s.i = j
		return shTok{kind: 'r'}
	}
	return s.word()
}

// word reads a word; s.lastValue is its value with quotes removed.
func (s *shScanner) word() shTok {
	var raw, val strings.Builder
	literal := true
	for s.i < len(s.src) {
		c := s.src[s.i]
		if strings.IndexByte(" \t\n;&|()<>", c) >= 0 {
			break
		}
		switch c {
		case '\'':
			literal = false
			end := strings.IndexByte(s.src[s.i+1:], '\'')
			if end < 0 {
				end = len(s.src) - s.i - 1
			}
			val.WriteString(s.src[s.i+1 : s.i+1+end])
			s.i += end + 2
			continue
		case '"':
			literal = false
			s.i++
			for s.i < len(s.src) && s.src[s.i] != '"' {
				switch {
				case s.src[s.i] == '\\' && s.i+1 < len(s.src):
					val.WriteByte(s.src[s.i+1])
					s.i += 2
				case s.src[s.i] == '$':
					s.dollar()
				default:
					val.WriteByte(s.src[s.i])
					s.i++
				}
			}
			s.i++
			continue
		case '\\':
			literal = false
			if s.i+1 < len(s.src) {
				val.WriteByte(s.src[s.i+1])
			}
			s.i += 2
			continue
		case '$':
			literal = false
			s.dollar()
			continue
		case '`':
			literal = false
		}
		raw.WriteByte(c)
		val.WriteByte(c)
		s.i++
	}
	s.lastValue = val.String()
	return shTok{kind: 'w', text: raw.String(), literal: literal}
}

// dollar skips an expansion at s.i, scanning a command substitution.
func (s *shScanner) dollar() {
	s.i++
	if s.i >= len(s.src) {
		return
	}
	switch {
	case strings.HasPrefix(s.src[s.i:], "(("):
		d := 0
		for s.i < len(s.src) {
			switch s.src[s.i] {
			case '(':
				d++
			case ')':
				d--
			}
			s.i++
			if d == 0 {
				return
			}
		}
	case s.src[s.i] == '(':
		s.i++
		s.list(')')
	case s.src[s.i] == '{':
		d := 0
		for s.i < len(s.src) {
			switch s.src[s.i] {
			case '{':
				d++
			case '}':
				d--
			}
			s.i++
			if d == 0 {
				return
			}
		}
	default:
		for s.i < len(s.src) && (isNameByte(s.src[s.i]) || strings.IndexByte("@*#?$!-", s.src[s.i]) >= 0 && s.src[s.i-1] == '$') {
			s.i++
		}
	}
}

func isNameByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// ---------------------------------------------------------------- sizes

var sizeRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$`)

// sgdiskBytes reads an sgdisk size or position: K, M, G, T, P are binary,
// s and no suffix are 512-byte sectors.
func sgdiskBytes(v string) (int64, bool) {
	return sizeBytes(v, func(suffix string) (float64, bool) {
		if suffix == "s" {
			return 512, true
		}
		mult := map[string]float64{"": 512, "s": 512, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
		f, ok := mult[strings.ToUpper(suffix)]
		return f, ok
	})
}

// partedBytes reads a parted position: no suffix means MB; s, B, kB, MB,
// GB, TB (and K, M, G, T) are decimal, KiB, MiB, GiB, TiB binary. A
// percentage has no fixed size.
func partedBytes(v string) (int64, bool) {
	return sizeBytes(v, func(suffix string) (float64, bool) {
		mult := map[string]float64{"": 1e6, "s": 512, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
			"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
		f, ok := mult[strings.ToLower(suffix)]
		return f, ok
	})
}

// sizeBytes reads a number with a unit suffix, which unit gives the bytes
// of.
func sizeBytes(v string, unit func(suffix string) (float64, bool)) (int64, bool) {
	m := sizeRe.FindStringSubmatch(v)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	f, ok := unit(m[2])
	if !ok {
		return 0, false
	}
	return int64(n * f), true
}

const mib = 1 << 20

func diskMinBytes(d *Disk) (int64, error) {
	switch t := d.Content.(type) {
	case *GPT:
		pos, tail := int64(mib), int64(0)
		for _, p := range t.Partitions {
			start := pos
			if p.Start != "0" {
				v, ok := sgdiskBytes(p.Start)
				if !ok {
					return 0, fmt.Errorf("%s: cannot read start %q", joinPath(p.Path, "start"), p.Start)
				}
				start = v
			}
			switch {
			case strings.HasPrefix(p.End, "+"):
				v, ok := sgdiskBytes(p.End[1:])
				if !ok {
					return 0, fmt.Errorf("%s: cannot read end %q", joinPath(p.Path, "end"), p.End)
				}
				pos = max(pos, start+v)
			case strings.HasPrefix(p.End, "-"):
				v, ok := sgdiskBytes(p.End[1:])
				if !ok {
					return 0, fmt.Errorf("%s: cannot read end %q", joinPath(p.Path, "end"), p.End)
				}
				tail = max(tail, v)
				pos = max(pos, start)
			default:
				v, ok := sgdiskBytes(p.End)
				if !ok {
					return 0, fmt.Errorf("%s: cannot read end %q", joinPath(p.Path, "end"), p.End)
				}
				pos = max(pos, v)
			}
		}
		return pos + tail + mib, nil
	case *Table:
		end, tail := int64(0), int64(0)
		for _, p := range t.Partitions {
			for _, v := range []string{p.Start, p.End} {
				if strings.HasPrefix(v, "-") {
					if n, ok := partedBytes(v[1:]); ok {
						tail = max(tail, n)
					}
				} else if n, ok := partedBytes(v); ok {
					end = max(end, n)
				}
			}
		}
		if end == 0 && tail == 0 {
			return 0, nil
		}
		return end + tail + mib, nil
	}
	return 0, nil
}
