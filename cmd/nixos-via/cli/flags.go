package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/hwconfig"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/flagtable"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/sequence"
)

// twoArgs is the value of a two-argument flag, as given.
type twoArgs = flagtable.Pair

// Options is the parsed drop-in command line. The flag table (installFlags)
// writes every flag straight to where it goes: the sequencer's Plan, how
// to reach the host (conn; its secrets are read when the plan is made,
// never from argv), or the few fields only the CLI reads.
type Options struct {
	sequence.Plan
	conn conn

	VMTest           bool
	VMAccel          string // --vm-accel
	SSHStoreSettings []twoArgs
	NoDiskoDeps      bool // accepted, ignored
	printBuildLog    bool // the local Nix's output goes to stderr
	help             bool

	JSON       bool
	Yes        bool
	Deprecated []string // warnings for deprecated flags that were used
}

const (
	gTarget = "Target and SSH"
	gBuild  = "What to install (build)"
	gKexec  = "Phase kexec"
	gDisko  = "Phase disko"
	gInst   = "Phase install"
	gFlow   = "Phases and safety"
	gOut    = "Output and deadlines"
	gDep    = "Deprecated (still accepted)"
)

var groups = []string{gTarget, gBuild, gKexec, gDisko, gInst, gFlow, gOut, gDep}

// installFlags is every flag of the drop-in command line, each bound to
// its place in o.
func installFlags(o *Options) []flagtable.Flag {
	return append(o.conn.flags(), []flagtable.Flag{
		{Name: "post-kexec-ssh-port", Group: gTarget, Arg: "PORT", Help: "SSH port of the installer after kexec (default 22, with or without -p)", To: flagtable.Port(&o.Kexec.PostKexecPort, "--post-kexec-ssh-port")},

		{Name: "flake", Short: "f", Group: gBuild, Arg: "REF#NAME", Help: "flake to install: nixosConfigurations.NAME of REF", To: o.flake},
		{Name: "store-paths", Short: "s", Group: gBuild, Arg: "DISKO SYSTEM", Help: "install prebuilt paths: a disko script and a system toplevel", To: o.storePaths},
		{Name: "print-build-logs", Short: "L", Group: gBuild, Help: "print full build logs", To: &o.printBuildLog},
		{Name: "option", Group: gBuild, Arg: "KEY VALUE", Help: "a Nix option for every nix call (repeatable)", To: o.nixOptions},
		{Name: "show-trace", Group: gBuild, Help: "show Nix evaluation traces", To: func() error { o.Nix.Args = append(o.Nix.Args, "--show-trace"); return nil }},
		{Name: "build-on", Group: gBuild, Arg: "WHERE", Help: "where to build: auto, local or remote (default auto)", To: &o.BuildOn},
		{Name: "from", Group: gBuild, Arg: "STORE", Help: "copy the closure from this store instead of building it here: file://DIR, an http(s):// binary cache, or ssh://[USER@]HOST[:PORT] or ssh-ng://… (its nix-store run over SSH; ?ssh-key=, ?base64-ssh-public-host-key=, ?remote-program=); nothing lands in the local store, and every NAR is checked against the store's narHash", To: &o.From},
		{Name: "no-substitute-on-destination", Group: gBuild, Help: "stream the whole closure from here (by default the target fetches what the binary caches have itself: the local Nix's substituters after --option, and the configuration's nix.settings.substituters; http(s) only, checked against the local narHash); implies --no-use-machine-substituters", To: func() error { o.Substitute, o.MachineSubstituters = false, false; return nil }},
		{Name: "no-use-machine-substituters", Group: gBuild, Help: "the target substitutes from the local Nix's substituters only, not also from the configuration's nix.settings.substituters", To: func() error { o.MachineSubstituters = false; return nil }},
		{Name: "ssh-store-setting", Group: gBuild, Arg: "KEY VALUE", Help: "a setting of nix's ssh store (not implemented yet: nixos-via does not use nix's ssh store)", To: func(p []twoArgs) error { o.SSHStoreSettings = p; return nil }},
		{Name: "vm-test", Group: gBuild, Help: "install into a throwaway local QEMU VM instead of a host (no HOST): the installer booted directly on blank disks made for the layout, every phase but kexec, then the VM boots from its disk and the reboot check runs; nothing is left behind", To: &o.VMTest},
		{Name: "vm-accel", Group: gBuild, Arg: "ACCEL", Help: "the --vm-test VM's accelerator: kvm, tcg or auto (default: KVM when /dev/kvm works, else TCG)", To: o.vmAccel},
		{Name: "generate-hardware-config", Group: gBuild, Arg: "TOOL PATH", Help: "after kexec, write the output of TOOL (nixos-facter or nixos-generate-config) on the target to PATH; the build waits for it", To: o.hardwareConfig},

		{Name: "kexec", Group: gKexec, Arg: "URL|FILE", Help: "installer tarball (default: the nixos-images release for the target's arch)", To: &o.Kexec.Source},
		{Name: "kexec-sha256", Group: gKexec, Arg: "HEX", Help: "refuse a tarball whose sha256 differs", To: func(v string) error { o.Kexec.SHA256 = strings.ToLower(v); return nil }},
		{Name: "force-kexec", Group: gKexec, Help: "kexec even when the target already runs an installer", To: &o.Kexec.Force},
		{Name: "reinstall", Group: gKexec, Help: "kexec and erase the disks even when the target already runs the very system built (without it such a run says so and changes nothing)", To: &o.Reinstall},
		{Name: "kexec-extra-flags", Group: gKexec, Arg: "FLAGS", Help: "extra flags for kexec --load and kexec -e (e.g. --no-sync)", To: &o.Kexec.ExtraFlags},

		{Name: "disk-encryption-keys", Group: gDisko, Arg: "REMOTE LOCAL", Help: "copy the LOCAL key file to REMOTE in the installer's RAM before disko (repeatable)", To: o.keyFiles},
		{Name: "disko-mode", Group: gDisko, Arg: "MODE", Help: "disko (wipe, format, mount; default), format, or mount", To: &o.DiskoMode},
		{Name: "no-disko-deps", Group: gDisko, Help: "accepted for compatibility: the rendered script never uploads tool dependencies", To: &o.NoDiskoDeps},

		{Name: "extra-files", Group: gInst, Arg: "DIR", Help: "copy DIR's contents into the installed root, modes kept, owned by root", To: &o.ExtraFiles},
		{Name: "chown", Group: gInst, Arg: "PATH OWNER", Help: "chown -R OWNER PATH in the installed root after --extra-files (repeatable)", To: o.chown},
		{Name: "copy-host-keys", Group: gInst, Help: "give the installed system the host's current SSH host keys", To: &o.CopyHostKeys},
		{Name: "copy-jobs", Group: gInst, Arg: "N", Help: "parallel streams for the closure copy (default 2)", To: o.copyJobs},
		{Name: "agent", Group: gInst, Arg: "FILE", Help: "static nixos-via binary to run on the target (default: this one, if static and of its arch)", To: &o.Agent},

		{Name: "phases", Group: gFlow, Arg: "LIST", Help: "comma list of kexec,disko,install,reboot (default all)", To: o.phases},
		{Name: "yes", Short: "y", Group: gFlow, Help: "do not ask before wiping the disks the layout names", To: &o.Yes},

		{Name: "json", Group: gOut, Help: "print one JSON event per line on stdout instead of progress text", To: &o.JSON},
		{Name: "debug", Group: gOut, Help: "print every remote command and more detail", To: func() error { o.conn.Debug, o.printBuildLog = true, true; return nil }},
		o.conn.timeoutFlag(),
		{Name: "timeout-kexec", Group: gOut, Arg: "DUR", Help: "deadline for the host to go down and the installer to answer (default 10m)", To: flagtable.Duration(&o.Kexec.DownTimeout, "timeout-kexec", &o.Kexec.UpTimeout)},
		{Name: "timeout-reboot", Group: gOut, Arg: "DUR", Help: "deadline for the installed system to answer after reboot (default 15m); one waiting for its LUKS passphrase is reported as waiting then, not as failed", To: flagtable.Duration(&o.RebootTimeout, "timeout-reboot")},
		{Name: "help", Short: "h", Group: gOut, Help: "show this help", To: &o.help},

		{Name: "no-reboot", Group: gDep, Help: "= --phases kexec,disko,install", To: o.deprecated("--no-reboot is deprecated: use --phases kexec,disko,install", phase.Kexec, phase.Disko, phase.Install)},
		{Name: "stop-after-disko", Group: gDep, Help: "= --phases kexec,disko", To: o.deprecated("--stop-after-disko is deprecated: use --phases kexec,disko", phase.Kexec, phase.Disko)},
		{Name: "build-on-remote", Group: gDep, Help: "= --build-on remote", To: o.buildOnRemote},
		{Name: "tty", Short: "t", Group: gDep, Help: "ignored: terminals are detected", To: o.deprecated("-t/--tty is deprecated and ignored: terminals are detected")},
	}...)
}

// UsageError is a bad command line: exit 2 with the reason.
type UsageError = phase.UsageError

func usagef(format string, a ...any) error { return phase.Usagef(format, a...) }

// ParseArgs parses the drop-in command line. It reports usage errors as
// *UsageError and wants help when the result's second value is true.
func ParseArgs(args []string) (*Options, bool, error) {
	o := &Options{}
	o.Phases, o.CopyJobs, o.Substitute, o.MachineSubstituters = phase.All(), 2, true, true
	o.Kexec.DownTimeout, o.Kexec.UpTimeout, o.RebootTimeout = 10*time.Minute, 10*time.Minute, 15*time.Minute
	fs, help, err := flagtable.Parse(installFlags(o), args, o.conn.host)
	if help || err != nil {
		return nil, help, err
	}
	o.Host = o.conn.Destination
	if err := o.ValidateInstall(o.VMTest, fs.Changed("disko-mode")); err != nil {
		return nil, false, err
	}
	return o, false, nil
}

// flake is --flake REF#NAME: sequence.ParseFlake.
func (o *Options) flake(v string) (err error) {
	o.Flake = v
	if v != "" {
		o.FlakeRef, o.FlakeAttr, err = sequence.ParseFlake(v)
	}
	return err
}

func (o *Options) storePaths(p []twoArgs) error {
	if len(p) > 1 {
		return usagef("-s/--store-paths given twice")
	}
	o.StorePaths = &sequence.StorePaths{Disko: p[0][0], System: p[0][1]}
	return nil
}

func (o *Options) nixOptions(p []twoArgs) error {
	for _, kv := range p {
		o.Nix.Args = append(o.Nix.Args, "--option", kv[0], kv[1])
	}
	return nil
}

func (o *Options) hardwareConfig(p []twoArgs) error {
	last := p[len(p)-1] // the last one wins, as in nixos-anywhere
	o.HardwareConfig = &hwconfig.Options{Tool: last[0], Path: last[1]}
	return o.HardwareConfig.Check()
}

func (o *Options) keyFiles(p []twoArgs) error {
	for _, kv := range p {
		if !strings.HasPrefix(kv[0], "/") {
			return usagef("--disk-encryption-keys %s %s: the remote path must be absolute", kv[0], kv[1])
		}
		o.KeyFiles = append(o.KeyFiles, diskorun.KeyFile{Remote: kv[0], Local: kv[1]})
	}
	return nil
}

func (o *Options) chown(p []twoArgs) error {
	for _, kv := range p {
		o.Chown = append(o.Chown, install.Ownership{Path: kv[0], Owner: kv[1]})
	}
	return nil
}

func (o *Options) copyJobs(v string) error {
	return flagtable.Count(&o.CopyJobs, "copy-jobs", 1, 64)(v)
}

// phases is --phases LIST: phase.ParseList.
func (o *Options) phases(v string) (err error) {
	o.Phases, err = phase.ParseList(v)
	return err
}

// deprecated is a deprecated shorthand: its warning, and the phases it
// stands for (none: it is ignored).
func (o *Options) deprecated(warning string, phases ...string) func() error {
	return func() error {
		o.Deprecated = append(o.Deprecated, warning)
		if phases != nil {
			o.Phases = phases
		}
		return nil
	}
}

func (o *Options) buildOnRemote() error {
	o.Deprecated = append(o.Deprecated, "--build-on-remote is deprecated: use --build-on remote")
	if o.BuildOn == "local" {
		return usagef("--build-on-remote conflicts with --build-on local")
	}
	o.BuildOn = "remote"
	return nil
}

// writeHelp prints the drop-in command line's help.
func writeHelp(w io.Writer) {
	fmt.Fprint(w, `nixos-via installs NixOS on a machine you reach over SSH: it builds the
configuration locally, kexecs the host into an installer, partitions its disks
from the disko layout, streams the system closure and reboots into it.

Usage:
  nixos-via [flags] [user@]HOST         install (drop-in for nixos-anywhere)
  nixos-via deploy [flags] [user@]HOST  switch a running NixOS host to a new system, with
                                        magic rollback (nixos-via deploy --help)
  nixos-via facts [--json] [user@]HOST  show what the host is (arch, RAM, firmware, disks ...)
  nixos-via disko --layout FILE ...     validate or render a disko layout
  nixos-via image installer|provider    build installer or test images
  nixos-via install-to-dir --flake REF#NAME DIR
                                        install into a directory here (as nixos-install --root)
  nixos-via enter DIR [-- CMD]          run a command or shell in an installed root (as nixos-enter)
  nixos-via version                     print the version

A first word that is a subcommand name is the subcommand; to install onto a
host that is literally named like one, write user@name or --target-host name.
`)
	flagtable.WriteGroups(w, installFlags(&Options{}), groups)
	fmt.Fprint(w, `
Environment: SSHPASS (with --env-password), SSH_AUTH_SOCK (ssh-agent).
Exit codes: 0 ok, 1 failure, 2 usage, 3 unreachable, 4 host key mismatch,
5 pre-flight refused, 6 kexec failed (or the hardware config could not be
generated), 7 disko failed, 8 install failed, 9 reboot not confirmed,
130 interrupted; deploy also: 10 rolled back, 11 failed before the host
changed, 12 failed and the host may run the new system.
`)
}
