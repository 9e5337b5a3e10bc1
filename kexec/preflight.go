package kexec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Memory needs, in bytes, beyond the kernel and initrd themselves.
const (
	// WorkingMargin is what the installer needs to run: kernel data
	// structures, sshd, the disk tools and the closure receiver's buffers.
	WorkingMargin int64 = 96 << 20
	// LoadMargin is what the old system needs free while loading the
	// kexec image (run's helpers, the appended cpio, page cache).
	LoadMargin int64 = 32 << 20
	// kernelFactor: the compressed bzImage decompresses to about this many
	// times its size in RAM.
	kernelFactor = 3
)

// Need is the memory the kexec step needs, computed from the tarball.
type Need struct {
	// OldAvailable: MemAvailable on the host before kexec (tarball files
	// on a RAM filesystem, the loaded kernel and initrd, margin).
	OldAvailable int64
	// NewTotal: MemTotal the installer needs once booted (kernel, the
	// compressed initrd while it unpacks, the unpacked initrd, margin).
	NewTotal int64
}

// Needs computes the memory the tarball needs. filesInRAM says the
// unpacked files sit on a RAM-backed filesystem (tmpfs) on the host.
func Needs(tb *Tarball, filesInRAM bool) Need {
	var files int64
	for _, n := range tb.Files {
		files += n
	}
	n := Need{}
	n.OldAvailable = tb.KernelBytes + tb.InitrdBytes + LoadMargin
	if filesInRAM {
		n.OldAvailable += files
	}
	n.NewTotal = kernelFactor*tb.KernelBytes + tb.InitrdBytes + tb.InitrdUnpacked + WorkingMargin
	return n
}

// PreflightInput is what the checks look at.
type PreflightInput struct {
	Facts       *target.Facts
	Tarball     *Tarball // nil before the tarball is known (default URL)
	CustomImage bool     // --kexec given
	ForceKexec  bool
	WorkDirFree int64 // free bytes where the tarball is unpacked; -1 unknown
	WorkDirRAM  bool  // that directory is on tmpfs/ramfs
	// Staged: bytes of this tarball's files an earlier, cut upload left
	// beside the work directory (StagedBytes). They already take up the
	// room (and, on a RAM filesystem, the memory) they will need.
	Staged int64
}

// Preflight runs every check before anything is uploaded. It returns
// warnings to show, or the first *phase.Refusal.
func Preflight(in PreflightInput) (warnings []string, err error) {
	f := in.Facts
	if f.OS != "Linux" {
		return nil, &phase.Refusal{Check: "os", Msg: fmt.Sprintf("the host runs %s; kexec needs Linux", orUnknown(f.OS))}
	}
	if !in.CustomImage {
		if _, err := DefaultURL(f.Arch); err != nil {
			return nil, &phase.Refusal{Check: "arch", Msg: fmt.Sprintf("the host is %s and there is no default installer for it: pass --kexec with an installer built for %s", f.Arch, f.Arch)}
		}
	}
	if f.Container != "" && f.Container != "none" {
		return nil, &phase.Refusal{Check: "container", Msg: fmt.Sprintf("the host is a %s container; a container cannot kexec its own kernel. Boot the machine into a rescue system instead and use --phases disko,install,reboot", f.Container)}
	}
	if !f.IsRoot && f.Escalation == "" {
		return nil, &phase.Refusal{Check: "root", Msg: fmt.Sprintf("the login user %s is not root and has neither sudo nor doas", f.User)}
	}
	if f.KexecDisabled {
		return nil, &phase.Refusal{Check: "kexec-disabled", Msg: "kexec is disabled on the host (/proc/sys/kernel/kexec_load_disabled = 1; it cannot be switched back on without a reboot). Reboot the host (or boot a rescue system) and try again"}
	}
	if missing := MissingRunCommands(f, in.Tarball, in.CustomImage); len(missing) > 0 {
		return nil, &phase.Refusal{Check: "tools", Msg: fmt.Sprintf("the installer's kexec/run calls %s on the host, which the host lacks (cpio and gzip pack the host's keys and network into the initrd). Install them (often the packages cpio, gzip, findutils, coreutils), or use an installer whose run needs only sh: one built by `nixos-via image installer`",
			strings.Join(missing, ", "))}
	}
	switch f.Lockdown {
	case "integrity", "confidentiality":
		return nil, &phase.Refusal{Check: "lockdown", Msg: fmt.Sprintf("the host's kernel is locked down (%s%s): it only kexecs signed kernels. Turn Secure Boot off in the firmware or use the provider's rescue system", f.Lockdown, sbNote(f))}
	}
	if f.SecureBoot == "enabled" {
		warnings = append(warnings, "Secure Boot is on but the kernel is not locked down: kexec may still be refused")
	}
	if f.Virt == "xen" {
		warnings = append(warnings, "the host is a Xen guest: kexec works in HVM guests but fails in PV guests (switch the VM to HVM if it does)")
	}
	if !f.Tools.Kexec && !hasHelper(in.Tarball, "kexec") {
		warnings = append(warnings, "the host has no kexec and the tarball brings none of its own")
	}
	if in.Tarball != nil {
		need := Needs(in.Tarball, in.WorkDirRAM)
		est := ""
		if in.Tarball.InitrdEstimated {
			est = " (initrd size estimated)"
		}
		avail := f.MemAvailKiB * 1024
		if in.WorkDirRAM {
			avail += in.Staged
		}
		if avail < need.OldAvailable {
			return nil, &phase.Refusal{Check: "memory", Msg: fmt.Sprintf("the host has %d MiB available but loading this installer needs %d MiB (kernel %d MiB + initrd %d MiB + %d MiB margin%s)%s. %s",
				avail>>20, need.OldAvailable>>20, in.Tarball.KernelBytes>>20, in.Tarball.InitrdBytes>>20, LoadMargin>>20, ramFiles(in), est, memAdvice)}
		}
		total := f.MemTotalKiB * 1024
		// An estimated unpacked size could be far off either way (a
		// squashfs inside the initrd barely grows): refuse only when even
		// the least it can be (its compressed size) does not fit, and warn
		// when the estimate does not.
		sure, unpacked, atLeast := need, in.Tarball.InitrdUnpacked, ""
		if in.Tarball.InitrdEstimated {
			low := *in.Tarball
			low.InitrdUnpacked = low.InitrdBytes
			sure, unpacked, atLeast = Needs(&low, in.WorkDirRAM), low.InitrdUnpacked, "at least "
		}
		if total < sure.NewTotal {
			return nil, &phase.Refusal{Check: "memory", Msg: fmt.Sprintf("the host has %d MiB of RAM but this installer needs %s%d MiB once booted (kernel ~%d MiB + initrd %d MiB compressed + %s%d MiB unpacked + %d MiB working margin). %s",
				total>>20, atLeast, sure.NewTotal>>20, kernelFactor*in.Tarball.KernelBytes>>20, in.Tarball.InitrdBytes>>20, atLeast, unpacked>>20, WorkingMargin>>20, memAdvice)}
		}
		if total < need.NewTotal {
			warnings = append(warnings, fmt.Sprintf("the host has %d MiB of RAM; this installer may need up to %d MiB once booted (its unpacked initrd could not be measured and is estimated at %d MiB): if the kexec phase times out, the host ran out of memory",
				total>>20, need.NewTotal>>20, in.Tarball.InitrdUnpacked>>20))
		}
		if in.WorkDirFree >= 0 {
			var files int64
			for _, n := range in.Tarball.Files {
				files += n
			}
			if free := in.WorkDirFree + in.Staged; free < files+(1<<20) {
				return nil, &phase.Refusal{Check: "disk-space", Msg: fmt.Sprintf("the directory the installer is unpacked to has %d MiB free, it needs %d MiB", free>>20, (files>>20)+1)}
			}
		}
	}
	return warnings, nil
}

const memAdvice = "Use a smaller installer (--kexec with one built by `nixos-via image installer`), or boot the provider's rescue system and run with --phases disko,install,reboot"

func ramFiles(in PreflightInput) string {
	if !in.WorkDirRAM {
		return ""
	}
	var files int64
	for _, n := range in.Tarball.Files {
		files += n
	}
	return fmt.Sprintf(" + %d MiB of unpacked files on a RAM filesystem", files>>20)
}

func sbNote(f *target.Facts) string {
	if f.SecureBoot == "enabled" {
		return ", Secure Boot on"
	}
	return ""
}

func hasHelper(tb *Tarball, name string) bool {
	if tb == nil {
		return true // unknown yet: do not warn
	}
	_, ok := tb.Files["kexec/"+name]
	return ok
}

func orUnknown(s string) string {
	if strings.TrimSpace(s) == "" {
		return "an unknown OS"
	}
	return s
}

// officialRunCommands are the host commands the nixos-images kexec/run
// cannot do without (kexec/CONTRACT.md): beyond sh and its builtins, and
// the tarball's own kexec and ip. sort is left out (without it that run
// only skips --kexec-syscall-auto), and so are dmesg and tail (only read
// after a failed load).
var officialRunCommands = []string{"sh", "cat", "cp", "cpio", "dirname", "find", "grep", "gzip", "mkdir", "mktemp", "nohup", "readlink", "rm", "sleep", "uname"}

// ourRunCommands: our run (images/installer.go) brings busybox for
// everything but the shell.
var ourRunCommands = []string{"sh"}

// SelfContainedRun says tb's run is ours, which needs only the host's sh:
// the tarball carries kexec/busybox and, when it is unpacked here, its
// run calls it.
func SelfContainedRun(tb *Tarball) bool {
	if tb == nil {
		return false
	}
	if _, ok := tb.Files["kexec/busybox"]; !ok {
		return false
	}
	if tb.Dir == "" {
		return true
	}
	run, err := os.ReadFile(filepath.Join(tb.Dir, "kexec", "run"))
	return err == nil && bytes.Contains(run, []byte(`"$here/busybox"`))
}

// RunCommands are the host commands tb's run needs. A tarball not yet
// known (nil) is the default nixos-images one, unless --kexec named
// another (custom): then nothing is known yet.
func RunCommands(tb *Tarball, custom bool) []string {
	switch {
	case tb == nil && custom:
		return nil
	case SelfContainedRun(tb):
		return ourRunCommands
	}
	return officialRunCommands
}

// MissingRunCommands are the commands of RunCommands the facts say the
// host lacks. Commands the probe did not look for count as present.
func MissingRunCommands(f *target.Facts, tb *Tarball, custom bool) []string {
	var missing []string
	for _, c := range RunCommands(tb, custom) {
		if have, probed := f.Tools.Commands[c]; probed && !have {
			missing = append(missing, c)
		}
	}
	return missing
}
