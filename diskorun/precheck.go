// Package diskorun is the target side of the disko phase: the disks
// checked and the wipe listed before anything is touched (CheckDisks), a
// resumed run recognised (AlreadyApplied), and the phase itself (Run): the
// key files copied, the checks that must pass on the host before its disks
// are touched (Precheck), the script run and recorded. The layout is
// rendered locally by package disko, which says what its script will need
// (disko.Layout.Needs); this package asks the host whether it has it.
package diskorun

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Requirements is what a rendered disko script needs on the host.
type Requirements struct {
	Tools []string // commands the script calls
	Files []File   // key and password files the script reads
	Disks []Disk   // disks and the bytes their fixed-size parts need
	// Names are the names the script gives the devices it creates; each
	// must be free on the host or sit on the disks in Erased only.
	Names  []disko.DeviceName
	Erased []string // the devices the layout erases
}

// File is a key or password file the script reads on the host.
type File struct {
	Path string // on the host
	What string // the layout option naming it, e.g. disk.main.content.partitions.luks.content.settings.keyFile
}

// Disk is a disk the layout names, with the least size it fits on.
type Disk struct {
	Name     string // disk.NAME in the layout
	Device   string
	MinBytes int64
}

// probeScript asks, in one round trip, for every tool, file and disk size.
func probeScript(req Requirements) string {
	var b strings.Builder
	for _, t := range req.Tools {
		fmt.Fprintf(&b, "command -v %s >/dev/null 2>&1 && echo 'tool ok %s' || echo 'tool missing %s'\n", target.ShellQuote(t), t, t)
	}
	for i, f := range req.Files {
		p := target.ShellQuote(f.Path)
		// A key may be a device (a USB stick): its size is not in stat.
		fmt.Fprintf(&b, "if [ -s %[1]s ] || [ -b %[1]s ]; then echo 'file ok %[2]d'; elif [ -e %[1]s ]; then echo 'file empty %[2]d'; else echo 'file missing %[2]d'; fi\n", p, i)
	}
	for i, d := range req.Disks {
		// /sys counts 512-byte sectors whatever the device's block size.
		fmt.Fprintf(&b, "r=$(readlink -f %s) && s=$(cat /sys/class/block/\"${r##*/}\"/size 2>/dev/null) && echo \"disk size %d $((s * 512))\" || echo 'disk size %d -1'\n",
			target.ShellQuote(d.Device), i, i)
	}
	if len(req.Names) > 0 {
		b.WriteString(namesProbe)
	}
	for i, d := range req.Erased {
		fmt.Fprintf(&b, "echo \"erased %d $(readlink -f %s)\"\n", i, target.ShellQuote(d))
	}
	for i, n := range req.Names {
		switch {
		case n.Dev != "":
			fmt.Fprintf(&b, "if [ -e %[1]s ]; then r=$(readlink -f %[1]s); echo \"name %[2]d on $(nv_under \"${r##*/}\" | sort -u | tr '\\n' ' ')\"; else echo 'name %[2]d free'; fi\n", target.ShellQuote(n.Dev), i)
		default: // a volume group: its physical volumes, when LVM is there
			fmt.Fprintf(&b, "if command -v vgs >/dev/null 2>&1 && pvs=$(vgs --noheadings -o pv_name %[1]s 2>/dev/null); then echo \"name %[2]d on $(for p in $pvs; do r=$(readlink -f \"$p\"); nv_under \"${r##*/}\"; done | sort -u | tr '\\n' ' ')\"; else echo 'name %[2]d free'; fi\n", target.ShellQuote(n.Name), i)
		}
	}
	return b.String()
}

// namesProbe defines nv_under BLOCK: the whole disks under a block
// device, through device-mapper and md members and partitions.
const namesProbe = `nv_under() {
	if [ -n "$(ls /sys/class/block/$1/slaves 2>/dev/null)" ]; then
		for s in $(ls /sys/class/block/$1/slaves); do nv_under "$s"; done
	elif [ -e /sys/class/block/$1/partition ]; then
		p=$(readlink -f /sys/class/block/$1/..); echo "/dev/${p##*/}"
	else
		echo "/dev/$1"
	fi
}
`

// Precheck runs one probe on the host and refuses, naming every problem at
// once, when a tool is missing, a key file is missing or empty, or a disk
// is smaller than the layout's fixed sizes add up to, or a LUKS, mdadm
// or volume group name the script creates is in use on a disk the layout
// does not erase. It changes nothing.
func Precheck(ctx context.Context, conn *target.Conn, req Requirements) error {
	script := probeScript(req)
	if script == "" {
		return nil
	}
	out, err := conn.Output(ctx, script, nil)
	if err != nil {
		return fmt.Errorf("check the host for what the disko script needs: %w", err)
	}
	return judge(req, string(out))
}

// judge turns the probe's answer into a *phase.Refusal, or nil.
func judge(req Requirements, out string) error {
	var missing, problems []string
	answered := 0
	erased := map[string]bool{}
	taken := map[int][]string{} // name index -> the disks it sits on
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		answered++
		if f[0] == "name" && f[2] == "free" {
			continue
		}
		switch {
		case f[0] == "tool" && f[1] == "missing":
			missing = append(missing, f[2])
		case f[0] == "file" && f[1] != "ok":
			i, err := strconv.Atoi(f[2])
			if err != nil || i < 0 || i >= len(req.Files) {
				continue
			}
			file := req.Files[i]
			problems = append(problems, fmt.Sprintf("%s: the file %s is %s on the host (give it with --disk-encryption-keys %s LOCAL_FILE)", file.What, file.Path, f[1], file.Path))
		case f[0] == "erased" && len(f) == 3:
			erased[f[2]] = true
		case f[0] == "name" && f[2] == "on":
			if i, err := strconv.Atoi(f[1]); err == nil && i >= 0 && i < len(req.Names) {
				taken[i] = f[3:]
			}
		case f[0] == "disk" && f[1] == "size" && len(f) == 4:
			i, err1 := strconv.Atoi(f[2])
			size, err2 := strconv.ParseInt(f[3], 10, 64)
			if err1 != nil || err2 != nil || i < 0 || i >= len(req.Disks) {
				continue
			}
			d := req.Disks[i]
			switch {
			case size < 0:
				problems = append(problems, fmt.Sprintf("disk.%s: cannot read the size of %s on the host", d.Name, d.Device))
			case size < d.MinBytes:
				problems = append(problems, fmt.Sprintf("disk.%s: %s has %s but the layout's fixed sizes need %s", d.Name, d.Device, bytesText(size), bytesText(d.MinBytes)))
			}
		}
	}
	for i, n := range req.Names {
		disks, ok := taken[i]
		if !ok {
			continue
		}
		var others []string
		for _, d := range disks {
			if !erased[d] {
				others = append(others, d)
			}
		}
		where := strings.Join(others, ", ")
		if len(disks) == 0 {
			where = "no disk"
		}
		if where != "" {
			problems = append(problems, fmt.Sprintf("%s: the %s name %q is already in use on the host, on %s, which the layout does not erase: the script would stop after wiping (stop that device first, or give it another name in the layout)",
				n.JSONPath, n.Kind, n.Name, where))
		}
	}
	if want := len(req.Tools) + len(req.Files) + len(req.Disks) + len(req.Names) + len(req.Erased); answered < want {
		return fmt.Errorf("check the host for what the disko script needs: %d of %d answers came back: %q", answered, want, out)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		problems = append([]string{"the host lacks " + strings.Join(missing, ", ") + ", which the disko script calls (use an installer that has them)"}, problems...)
	}
	if len(problems) > 0 {
		return &phase.Refusal{Check: phase.Disko, Problems: problems}
	}
	return nil
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
