package disko

// How names travel from the layout to the disk and back. Each name has
// one on-disk form, and the script compares that form and nothing else:
//
//   - gpt (sgdisk): --change-name=N:LABEL stores LABEL as the GPT entry's
//     name, unchanged, except that sgdisk ends it at the first ':' (it
//     splits the option at colons), so a label holding a colon is refused.
//   - legacy table (parted, format gpt): like disko, mkpart gets the name
//     hex-escaped (diskoHexEscape); parted splits its arguments at blanks
//     and strips quotes, but keeps a backslash outside quotes, so the entry
//     holds the escaped text itself (`a\x20b`), cut to the 36 characters a
//     GPT name has room for. That text is what the script looks for.
//   - udev names the /dev/disk/by-partlabel link after the entry's name
//     encoded by libblkid (udevEscape). The script first tries that link,
//     then compares `blkid -p -s PART_ENTRY_NAME -o value`, which prints
//     the raw name, with the on-disk form of each partition of the parent
//     disk. blkid -t PARTLABEL=… is not used: it strips quotes around the
//     value, and its `-o export` form escapes blanks and non-ASCII bytes.
//   - LVM, md and device-mapper names are refused when they hold characters
//     the tools reject or mangle in their /dev names (checkToolNames), so
//     /dev/VG/LV, /dev/md/NAME and /dev/mapper/NAME are the names as given.

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// gptNameUnits is how many UTF-16 code units a GPT partition name holds.
const gptNameUnits = 36

// udevEscape is the name udev gives a /dev/disk/by-partlabel link for a
// GPT name: libblkid's encoding of ID_PART_ENTRY_NAME. Every byte outside
// 0-9 A-Z a-z # + - . : = @ _ becomes \xhh (lower-case hex; a backslash
// and '/' too), and valid multi-byte UTF-8 characters stay as they are.
// disko escapes with upper-case hex and every non-ASCII byte, giving
// links udev never makes for such labels.
func udevEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError && n > 1 && validUdevRune(r) {
				b.WriteString(s[i : i+n])
				i += n
				continue
			}
		}
		if plainNameByte(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\x%02x`, c)
		}
		i++
	}
	return b.String()
}

// validUdevRune mirrors libblkid's range check of a UTF-8 character (no
// surrogates, no U+FDD0…U+FDEF, nothing ending in FFFF).
func validUdevRune(r rune) bool {
	switch {
	case r > 0x10ffff, r >= 0xd800 && r <= 0xdfff, r > 0xfdcf && r < 0xfdf0, r&0xffff == 0xffff:
		return false
	}
	return true
}

func plainNameByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || strings.IndexByte("#+-.:=@_", c) >= 0
}

// diskoHexEscape is disko's escaping of a legacy-table partition name for
// parted: every byte outside 0-9 A-Z a-z # + - . : = @ _ / becomes \xHH
// (upper-case hex). The result has no blank, quote or other byte parted's
// argument splitting would act on.
func diskoHexEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plainNameByte(c) || c == '/' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\x%02X`, c)
		}
	}
	return b.String()
}

// partedNameArg is the mkpart argument naming a legacy gpt-table
// partition. parted drops an empty argument, so no name is written as a
// pair of quotes, which parted reads as an empty name.
func partedNameArg(name *string) string {
	if name == nil || *name == "" {
		return `""`
	}
	return diskoHexEscape(*name)
}

// tableGPTName is the name a legacy gpt-table partition has on disk: the
// escaped text parted was given, cut to what a GPT entry holds (the
// escaped text is ASCII, one code unit a byte).
func tableGPTName(name *string) string {
	if name == nil {
		return ""
	}
	s := diskoHexEscape(*name)
	if len(s) > gptNameUnits {
		s = s[:gptNameUnits]
	}
	return s
}

// gptNameLen is the length of s in UTF-16 code units.
func gptNameLen(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

var (
	// LVM accepts these characters in VG and LV names.
	lvmNameRe = regexp.MustCompile(`^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$`)
	// mdadm accepts POSIX portable file names for arrays.
	mdNameRe = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)
	// libdevmapper keeps these characters in /dev/mapper names and
	// hex-escapes the others.
	dmNameRe = regexp.MustCompile(`^[A-Za-z0-9#+.:=@_-]+$`)
)

// checkToolNames refuses VG, LV, md and LUKS names that the tools would
// reject or store under another /dev name than the one the script and the
// NixOS configuration use.
func (l *Layout) checkToolNames(errs *issues) {
	for _, v := range l.VGs {
		if !lvmNameRe.MatchString(v.Name) || v.Name == "." || v.Name == ".." {
			errs.add(joinPath(v.Path, "name"), "volume group name %q: LVM allows only A-Z a-z 0-9 + _ . - (not first)", v.Name)
		}
		for _, lv := range v.LVs {
			if !lvmNameRe.MatchString(lv.Name) || lv.Name == "." || lv.Name == ".." {
				errs.add(joinPath(lv.Path, "name"), "LV name %q: LVM allows only A-Z a-z 0-9 + _ . - (not first)", lv.Name)
			}
		}
	}
	for _, m := range l.MDArrays {
		if !mdNameRe.MatchString(m.Name) {
			errs.add(joinPath(m.Path, "name"), "mdadm array name %q: mdadm allows only A-Z a-z 0-9 _ . - (not first)", m.Name)
		}
	}
	l.eachContent(func(_ Device, c Content) {
		if x, ok := c.(*LUKS); ok && x.Name != "" && !dmNameRe.MatchString(x.Name) {
			errs.add(joinPath(x.Path, "name"), "LUKS name %q: /dev/mapper names keep only A-Z a-z 0-9 # + - . : = @ _ (device-mapper escapes the others)", x.Name)
		}
	})
}
