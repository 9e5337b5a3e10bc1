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

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Requirements is what a rendered disko script needs on the host.
type Requirements struct {
	Tools []string // commands the script calls
	Files []File   // key and password files the script reads
	Disks []Disk   // disks and the bytes their fixed-size parts need
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
	return b.String()
}

// Precheck runs one probe on the host and refuses, naming every problem at
// once, when a tool is missing, a key file is missing or empty, or a disk
// is smaller than the layout's fixed sizes add up to. It changes nothing.
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
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		answered++
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
	if want := len(req.Tools) + len(req.Files) + len(req.Disks); answered < want {
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
