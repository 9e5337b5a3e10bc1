// Package enter runs a command, or a login shell, inside an installed
// NixOS root on this machine, as nixos-enter does: in a mount, UTS and
// pid namespace of its own, with /dev and /sys bound from this machine, a
// fresh /proc and a tmpfs on /run, this machine's /etc/resolv.conf bound
// over the root's, and the system activated first (its activate script
// and systemd-tmpfiles, failures ignored). Every mount lives in the
// private namespace, so it is gone when the command ends and none of
// this machine's mounts is touched. With Boot, systemd-nspawn boots the
// root as a container instead, where it is installed.
package enter

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// DefaultSystem is the system a root is entered with: its system profile.
const DefaultSystem = "/nix/var/nix/profiles/system"

// Options say what to run in which root.
type Options struct {
	Root string // an installed NixOS root (it has etc/NIXOS)
	// Command runs in the root; empty is the system's sw/bin/bash
	// --login, or sw/bin/sh -l when it has no bash. It is looked up
	// with the system's sw/bin first on PATH.
	Command []string
	// System is the toplevel (as seen inside the root) whose activate
	// runs and whose sw/bin is on PATH; "" is DefaultSystem.
	System string
	// NoActivate skips the activation (and systemd-tmpfiles).
	NoActivate bool
	// Boot boots the root as a container with systemd-nspawn instead
	// (Command, System and NoActivate are then not used).
	Boot bool

	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// euid is the effective user id Run checks for root; nil is os.Geteuid.
	euid func() int
}

// ExitError is a command that ran in the root and exited non-zero.
type ExitError struct {
	Command string
	Status  int
}

func (e *ExitError) Error() string { return fmt.Sprintf("%s exited %d", e.Command, e.Status) }

// ExitStatus is the command's exit status.
func (e *ExitError) ExitStatus() int { return e.Status }

// Run runs the command in the root and waits for it. On a terminal the
// command is its foreground process group, so a Ctrl-C goes to it alone
// (not to nixos-via); a command that fails is an *ExitError.
func Run(opts Options) error {
	if err := check(opts); err != nil {
		return err
	}
	root := filepath.Clean(opts.Root)
	if opts.Boot {
		return boot(opts, root)
	}
	sys := opts.System
	if sys == "" {
		sys = DefaultSystem
	}
	command := opts.Command
	if len(command) == 0 {
		command = []string{sys + "/sw/bin/sh", "-l"}
		if isFile(root, sys+"/sw/bin/bash") {
			command = []string{sys + "/sw/bin/bash", "--login"}
		}
	}
	activate, tmpfiles := "", ""
	if !opts.NoActivate {
		if isFile(root, sys+"/activate") {
			activate = sys + "/activate"
		}
		if isFile(root, sys+"/sw/bin/systemd-tmpfiles") {
			tmpfiles = sys + "/sw/bin/systemd-tmpfiles"
		}
	}
	args := append([]string{"-c", script, "nixos-via-enter", root, sys, activate, tmpfiles}, command...)
	cmd := exec.Command("sh", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	// The namespaces of nixos-enter: mounts, hostname and processes of
	// its own; the network stays this machine's (the activation gets a
	// network namespace of its own, see script).
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID}
	if tty, ok := terminal(opts.Stdin); ok {
		// On a terminal the command is the foreground process group, so
		// what is typed there (Ctrl-C, Ctrl-Z) goes to it alone, never to
		// nixos-via; the terminal is ours again when it ends.
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, 0 // its stdin
		defer takeForeground(tty)
	}
	return result(cmd.Run(), command)
}

// terminal is r as a terminal, when it is one.
func terminal(r io.Reader) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// takeForeground makes this process's group the terminal's foreground
// group again (as a shell does when a job ends), with SIGTTOU, which a
// background group's TIOCSPGRP raises, ignored meanwhile.
func takeForeground(tty *os.File) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(int(tty.Fd()), unix.TIOCSPGRP, unix.Getpgrp())
}

// check refuses what cannot be entered, before anything is mounted.
func check(o Options) error {
	euid := os.Geteuid
	if o.euid != nil {
		euid = o.euid
	}
	switch {
	case o.Root == "" || !filepath.IsAbs(o.Root):
		return phase.Usagef("enter: directory %q: want an absolute path", o.Root)
	case filepath.Clean(o.Root) == "/":
		return phase.Usagef("enter: directory /: this machine's own root")
	case o.Boot && len(o.Command) > 0:
		return phase.Usagef("enter: --boot boots the system's init; it takes no command")
	}
	if st, err := os.Stat(o.Root); err != nil || !st.IsDir() {
		return phase.Usagef("enter: %s is not a directory", o.Root)
	}
	// As nixos-enter, which exits 126 for it.
	if _, err := os.Stat(filepath.Join(o.Root, "etc/NIXOS")); err != nil {
		return phase.Usagef("enter: %s is not a NixOS installation (it has no etc/NIXOS; install-to-dir makes one)", o.Root)
	}
	if o.Boot {
		if _, err := exec.LookPath("systemd-nspawn"); err != nil {
			return &phase.Refusal{Check: "systemd-nspawn", Msg: "enter --boot needs systemd-nspawn, which this machine lacks " +
				"(Debian: apt-get install systemd-container); without --boot, enter runs a command or shell in the root"}
		}
	}
	if euid() != 0 {
		return &phase.Refusal{Check: "root", Msg: "enter needs root (run it with sudo): it makes mount, UTS and pid namespaces, " +
			"mounts /dev, /proc, /sys and /run in the root and chroots into it; nothing was mounted"}
	}
	return nil
}

// script runs in the new namespaces: sh -c script NAME ROOT SYSTEM
// ACTIVATE TMPFILES COMMAND... (ACTIVATE and TMPFILES empty to skip
// them). Its mounts are private from the first line on, so none of them
// propagates to this machine's, and they vanish with the namespace.
const script = `set -e
r=$1 system=$2 activate=$3 tmpfiles=$4
shift 4
mount --make-rprivate /
mkdir -m 0755 -p "$r/dev" "$r/proc" "$r/sys" "$r/run" "$r/etc"
mount --rbind /dev "$r/dev"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount -t tmpfs -o mode=755 tmpfs "$r/run"
# As nixos-enter: name resolution in the root, through this machine's
# resolv.conf (a root whose resolv.conf is a symlink keeps its own).
if [ -e /etc/resolv.conf ] && [ ! -L "$r/etc/resolv.conf" ]; then
  [ -e "$r/etc/resolv.conf" ] || : > "$r/etc/resolv.conf"
  mount --bind /etc/resolv.conf "$r/etc/resolv.conf" || echo "could not bind /etc/resolv.conf into the root" >&2
fi
# The activation (/etc, users, /run/current-system) in a network
# namespace of its own: whatever it does to interfaces stays off this
# machine's. Failures are ignored, as nixos-enter does.
if [ -n "$activate" ]; then
  LOCALE_ARCHIVE="$system/sw/lib/locale/locale-archive" IN_NIXOS_ENTER=1 unshare -n chroot "$r" "$activate" 1>&2 ||
    echo "activation exited $? (ignored, as nixos-enter does)" >&2
fi
if [ -n "$tmpfiles" ]; then
  unshare -n chroot "$r" "$tmpfiles" --create --remove -E 2>/dev/null ||
    echo "systemd-tmpfiles exited $? (ignored, as nixos-enter does)" >&2
fi
unset TMPDIR
c=$(command -v chroot)
PATH="$system/sw/bin:$PATH" exec "$c" "$r" "$@"
`

// boot boots root with systemd-nspawn: the system profile's init as the
// container's pid 1, as NixOS containers start.
func boot(o Options, root string) error {
	command := []string{"systemd-nspawn", "--directory=" + root, "--kill-signal=SIGRTMIN+3", "--", DefaultSystem + "/init"}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	return result(cmd.Run(), command)
}

// result is Run's error for a command that ended with err.
func result(err error, command []string) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return &ExitError{Command: strings.Join(command, " "), Status: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("enter: %s: %w", strings.Join(command, " "), err)
	}
	return nil
}

// isFile says whether p, an absolute path as the root sees it, is a
// regular file in root, its symlinks resolved inside root (store links are
// absolute: outside the root they would point into this machine's store).
func isFile(root, p string) bool {
	full, ok := inRoot(root, p)
	if !ok {
		return false
	}
	st, err := os.Stat(full)
	return err == nil && st.Mode().IsRegular()
}

// inRoot is root joined with p, every symlink on the way resolved as
// inside root (at most 40).
func inRoot(root, p string) (string, bool) {
	done, rest := "/", strings.Split(strings.Trim(p, "/"), "/")
	for links := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, c)
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			done = next // not a symlink (or absent: Stat says so)
			continue
		}
		if links++; links > 40 {
			return "", false
		}
		if filepath.IsAbs(target) {
			done = "/"
		}
		rest = append(strings.Split(strings.Trim(target, "/"), "/"), rest...)
	}
	return filepath.Join(root, done), true
}
