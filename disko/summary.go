package disko

import (
	"fmt"
	"strings"
)

// Summary counts what the layout holds: "1 disk, 2 volume groups".
func (l *Layout) Summary() string {
	var parts []string
	add := func(n int, what string) {
		if n == 1 {
			parts = append(parts, "1 "+what)
		} else if n > 1 {
			parts = append(parts, fmt.Sprintf("%d %ss", n, what))
		}
	}
	add(len(l.Disks), "disk")
	add(len(l.MDArrays), "md array")
	add(len(l.VGs), "volume group")
	add(len(l.Zpools), "zpool")
	add(len(l.Bcachefs), "bcachefs filesystem")
	add(len(l.Nodevs), "nodev mount")
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}

// WipeSummary lists the disks mode would wipe, one a line.
func (l *Layout) WipeSummary(mode Mode) string {
	var w strings.Builder
	targets := l.WipeTargets()
	switch {
	case mode != ModeDestroyFormatMount && mode != ModeDestroy:
		fmt.Fprintf(&w, "Mode %s wipes no disk.\n", mode)
	case len(targets) == 0:
		fmt.Fprintf(&w, "Mode %s wipes no disk (every disk has destroy = false).\n", mode)
	default:
		fmt.Fprintf(&w, "Mode %s WIPES these disks:\n", mode)
		for _, t := range targets {
			fmt.Fprintf(&w, "  %s  (disk.%s)\n", t.Device, t.Name)
		}
	}
	return w.String()
}
