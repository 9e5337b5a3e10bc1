package disko

import (
	"fmt"
	"io"
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

// Report is what to show of a layout without running it, as
// `nixos-via disko` does.
type Report struct {
	Show Show
	Mode Mode
	Opts RenderOptions
}

// Show is one view of a layout.
type Show int

const (
	ShowWipes    Show = iota // the disks Mode would wipe (WipeSummary)
	ShowScript               // Mode's POSIX sh script
	ShowNixOS                // the NixOS configuration the layout implies, as JSON
	ShowValidity             // "SOURCE: valid (Summary)"
)

// Write writes r's view of l, read from source (a file name, or what
// names a flake's layout), to w. The layout must render in r.Mode to
// be shown as valid or to list its wipes: a layout that cannot be
// rendered is not valid.
func (l *Layout) Write(w io.Writer, source string, r Report) error {
	invalid := func(err error) error { return fmt.Errorf("invalid layout %s: %v", source, err) }
	switch r.Show {
	case ShowNixOS:
		b, err := l.NixOSJSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case ShowScript:
		script, err := l.Script(r.Mode, r.Opts)
		if err != nil {
			return invalid(err)
		}
		_, err = io.WriteString(w, script)
		return err
	}
	if _, err := l.Plan(r.Mode, r.Opts); err != nil {
		return invalid(err)
	}
	if r.Show == ShowValidity {
		_, err := fmt.Fprintf(w, "%s: valid (%s)\n", source, l.Summary())
		return err
	}
	_, err := io.WriteString(w, l.WipeSummary(r.Mode))
	return err
}
