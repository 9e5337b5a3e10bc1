package disko

import (
	"fmt"
	"strings"
)

// Mode selects what a rendered script does.
type Mode int

const (
	// ModeDestroyFormatMount wipes every disk with destroy = true, creates
	// the layout and mounts it (nixos-anywhere's default, disko's
	// diskoScript).
	ModeDestroyFormatMount Mode = iota
	// ModeFormat creates what is missing; it never wipes.
	ModeFormat
	// ModeFormatMount creates what is missing and mounts.
	ModeFormatMount
	// ModeMount opens, assembles and mounts an existing layout.
	ModeMount
	// ModeUnmount unmounts and closes everything the layout opened.
	ModeUnmount
	// ModeDestroy wipes every disk with destroy = true.
	ModeDestroy
)

var modeNames = map[Mode]string{
	ModeDestroyFormatMount: "destroy,format,mount",
	ModeFormat:             "format",
	ModeFormatMount:        "format,mount",
	ModeMount:              "mount",
	ModeUnmount:            "unmount",
	ModeDestroy:            "destroy",
}

func (m Mode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode accepts disko's mode names, including the legacy aliases
// "disko" and "zap_create_mount" (destroy,format,mount) and "create"
// (format).
func ParseMode(s string) (Mode, error) {
	switch strings.TrimSpace(s) {
	case "destroy,format,mount", "disko", "zap_create_mount", "":
		return ModeDestroyFormatMount, nil
	case "format", "create":
		return ModeFormat, nil
	case "format,mount":
		return ModeFormatMount, nil
	case "mount":
		return ModeMount, nil
	case "unmount":
		return ModeUnmount, nil
	case "destroy":
		return ModeDestroy, nil
	}
	return 0, fmt.Errorf("unknown disko mode %q (expected destroy,format,mount, format, format,mount, mount, unmount or destroy)", s)
}

func (m Mode) destroys() bool { return m == ModeDestroyFormatMount || m == ModeDestroy }
func (m Mode) formats() bool {
	return m == ModeDestroyFormatMount || m == ModeFormat || m == ModeFormatMount
}
func (m Mode) mounts() bool {
	return m == ModeDestroyFormatMount || m == ModeFormatMount || m == ModeMount
}
