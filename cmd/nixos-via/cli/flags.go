package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/hwconfig"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/flagtable"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/sequence"
)

// StorePaths is -s/--store-paths DISKO SYSTEM: a prebuilt disko script
// and system toplevel.
type StorePaths = sequence.StorePaths

// KeyFile is --disk-encryption-keys REMOTE LOCAL: the LOCAL file is
// copied to REMOTE in the installer's RAM.
type KeyFile = diskorun.KeyFile

// Chown is --chown PATH OWNER in the installed root.
type Chown = install.Ownership

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
func installFlags(o *Options) []flagSpec {
	return append(o.conn.flags(), []flagSpec{
		{name: "post-kexec-ssh-port", group: gTarget, arg: "PORT", help: "SSH port of the installer after kexec (default 22, with or without -p)", to: flagtable.Port(&o.Kexec.PostKexecPort, "--post-kexec-ssh-port")},

		{name: "flake", short: "f", group: gBuild, arg: "REF#NAME", help: "flake to install: nixosConfigurations.NAME of REF", to: o.flake},
		{name: "store-paths", short: "s", group: gBuild, arg: "DISKO SYSTEM", help: "install prebuilt paths: a disko script and a system toplevel", to: o.storePaths},
		{name: "print-build-logs", short: "L", group: gBuild, help: "print full build logs", to: &o.printBuildLog},
		{name: "option", group: gBuild, arg: "KEY VALUE", help: "a Nix option for every nix call (repeatable)", to: o.nixOptions},
		{name: "show-trace", group: gBuild, help: "show Nix evaluation traces", to: func() error { o.Nix.Args = append(o.Nix.Args, "--show-trace"); return nil }},
		{name: "build-on", group: gBuild, arg: "WHERE", help: "where to build: auto, local or remote (default auto)", to: &o.BuildOn},
		{name: "from", group: gBuild, arg: "STORE", help: "copy the closure from this store (file://DIR or an http(s):// binary cache) instead of building it here; nothing lands in the local store (ssh:// not implemented yet)", to: &o.From},
		{name: "no-substitute-on-destination", group: gBuild, help: "stream the whole closure from here (by default the target fetches what the binary caches have itself: the local Nix's substituters after --option, and the configuration's nix.settings.substituters; http(s) only, checked against the local narHash); implies --no-use-machine-substituters", to: func() error { o.Substitute, o.MachineSubstituters = false, false; return nil }},
		{name: "no-use-machine-substituters", group: gBuild, help: "the target substitutes from the local Nix's substituters only, not also from the configuration's nix.settings.substituters", to: func() error { o.MachineSubstituters = false; return nil }},
		{name: "ssh-store-setting", group: gBuild, arg: "KEY VALUE", help: "a setting of nix's ssh store (not implemented yet: nixos-via does not use nix's ssh store)", to: func(p []twoArgs) error { o.SSHStoreSettings = p; return nil }},
		{name: "vm-test", group: gBuild, help: "only build and run the flake's disko VM install test, locally", to: &o.VMTest},
		{name: "generate-hardware-config", group: gBuild, arg: "TOOL PATH", help: "after kexec, write the output of TOOL (nixos-facter or nixos-generate-config) on the target to PATH; the build waits for it", to: o.hardwareConfig},

		{name: "kexec", group: gKexec, arg: "URL|FILE", help: "installer tarball (default: the nixos-images release for the target's arch)", to: &o.Kexec.Source},
		{name: "kexec-sha256", group: gKexec, arg: "HEX", help: "refuse a tarball whose sha256 differs", to: func(v string) error { o.Kexec.SHA256 = strings.ToLower(v); return nil }},
		{name: "force-kexec", group: gKexec, help: "kexec even when the target already runs an installer", to: &o.Kexec.Force},
		{name: "kexec-extra-flags", group: gKexec, arg: "FLAGS", help: "extra flags for kexec --load and kexec -e (e.g. --no-sync)", to: &o.Kexec.ExtraFlags},

		{name: "disk-encryption-keys", group: gDisko, arg: "REMOTE LOCAL", help: "copy the LOCAL key file to REMOTE in the installer's RAM before disko (repeatable)", to: o.keyFiles},
		{name: "disko-mode", group: gDisko, arg: "MODE", help: "disko (wipe, format, mount; default), format, or mount", to: &o.DiskoMode},
		{name: "no-disko-deps", group: gDisko, help: "accepted for compatibility: the rendered script never uploads tool dependencies", to: &o.NoDiskoDeps},

		{name: "extra-files", group: gInst, arg: "DIR", help: "copy DIR's contents into the installed root, modes kept, owned by root", to: &o.ExtraFiles},
		{name: "chown", group: gInst, arg: "PATH OWNER", help: "chown -R OWNER PATH in the installed root after --extra-files (repeatable)", to: o.chown},
		{name: "copy-host-keys", group: gInst, help: "give the installed system the host's current SSH host keys", to: &o.CopyHostKeys},
		{name: "copy-jobs", group: gInst, arg: "N", help: "parallel streams for the closure copy (default 2)", to: o.copyJobs},
		{name: "agent", group: gInst, arg: "FILE", help: "static nixos-via binary to run on the target (default: this one, if static and of its arch)", to: &o.Agent},

		{name: "phases", group: gFlow, arg: "LIST", help: "comma list of kexec,disko,install,reboot (default all)", to: o.phases},
		{name: "yes", short: "y", group: gFlow, help: "do not ask before wiping the disks the layout names", to: &o.Yes},

		{name: "json", group: gOut, help: "print one JSON event per line on stdout instead of progress text", to: &o.JSON},
		{name: "debug", group: gOut, help: "print every remote command and more detail", to: func() error { o.conn.Debug, o.printBuildLog = true, true; return nil }},
		o.conn.timeoutFlag(),
		{name: "timeout-kexec", group: gOut, arg: "DUR", help: "deadline for the host to go down and the installer to answer (default 10m)", to: duration(&o.Kexec.DownTimeout, "timeout-kexec", &o.Kexec.UpTimeout)},
		{name: "timeout-reboot", group: gOut, arg: "DUR", help: "deadline for the installed system to answer after reboot (default 15m); one waiting for its LUKS passphrase is reported as waiting then, not as failed", to: duration(&o.RebootTimeout, "timeout-reboot")},
		{name: "help", short: "h", group: gOut, help: "show this help", to: &o.help},

		{name: "no-reboot", group: gDep, help: "= --phases kexec,disko,install", to: o.deprecated("--no-reboot is deprecated: use --phases kexec,disko,install", phase.Kexec, phase.Disko, phase.Install)},
		{name: "stop-after-disko", group: gDep, help: "= --phases kexec,disko", to: o.deprecated("--stop-after-disko is deprecated: use --phases kexec,disko", phase.Kexec, phase.Disko)},
		{name: "build-on-remote", group: gDep, help: "= --build-on remote", to: o.buildOnRemote},
		{name: "tty", short: "t", group: gDep, help: "ignored: terminals are detected", to: o.deprecated("-t/--tty is deprecated and ignored: terminals are detected")},
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
	fs, help, err := parseFlags(installFlags(o), args, o.conn.host)
	if help || err != nil {
		return nil, help, err
	}
	if err := o.check(fs.Changed("disko-mode")); err != nil {
		return nil, false, err
	}
	o.Host = o.conn.Destination
	return o, false, nil
}

func (o *Options) flake(v string) error {
	o.Flake = v
	if v == "" {
		return nil
	}
	// REF#NAME: NAME expands as in nixos-anywhere.
	i := strings.LastIndex(v, "#")
	if i < 0 || i == len(v)-1 {
		return usagef("--flake %q: missing #NAME: please specify the configuration, e.g. .#myhost", v)
	}
	o.FlakeRef, o.FlakeAttr = v[:i], v[i+1:]
	if o.FlakeRef == "" {
		o.FlakeRef = "."
	}
	if !strings.HasPrefix(o.FlakeAttr, "nixosConfigurations.") {
		o.FlakeAttr = fmt.Sprintf("nixosConfigurations.%q.config", o.FlakeAttr)
	}
	return nil
}

func (o *Options) storePaths(p []twoArgs) error {
	if len(p) > 1 {
		return usagef("-s/--store-paths given twice")
	}
	o.StorePaths = &StorePaths{Disko: p[0][0], System: p[0][1]}
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
	if _, err := hwconfig.Command(last[0]); err != nil {
		return err
	}
	if last[1] == "" {
		return usagef("--generate-hardware-config %s: empty path", last[0])
	}
	o.HardwareConfig = &hwconfig.Options{Tool: last[0], Path: last[1]}
	return nil
}

func (o *Options) keyFiles(p []twoArgs) error {
	for _, kv := range p {
		if !strings.HasPrefix(kv[0], "/") {
			return usagef("--disk-encryption-keys %s %s: the remote path must be absolute", kv[0], kv[1])
		}
		o.KeyFiles = append(o.KeyFiles, KeyFile{Remote: kv[0], Local: kv[1]})
	}
	return nil
}

func (o *Options) chown(p []twoArgs) error {
	for _, kv := range p {
		o.Chown = append(o.Chown, Chown{Path: kv[0], Owner: kv[1]})
	}
	return nil
}

func (o *Options) copyJobs(v string) error {
	return flagtable.Count(&o.CopyJobs, "copy-jobs", 1, 64)(v)
}

func (o *Options) phases(v string) error {
	o.Phases = nil
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(phase.All(), p) {
			return usagef("--phases: unknown phase %q (want kexec, disko, install, reboot)", p)
		}
		if !slices.Contains(o.Phases, p) {
			o.Phases = append(o.Phases, p)
		}
	}
	if len(o.Phases) == 0 {
		return usagef("--phases: no phase given")
	}
	return nil
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

// check checks the flags that take one of a few words, and the flags
// together, as upstream does.
func (o *Options) check(diskoModeGiven bool) error {
	if o.BuildOn == "" {
		o.BuildOn = "auto"
	}
	if !slices.Contains([]string{"auto", "local", "remote"}, o.BuildOn) {
		return usagef("--build-on %q: want auto, local or remote", o.BuildOn)
	}
	if o.DiskoMode == "" {
		o.DiskoMode = "disko"
	}
	if !slices.Contains([]string{"disko", "format", "mount"}, o.DiskoMode) {
		return usagef("--disko-mode %q: want disko, format or mount", o.DiskoMode)
	}
	if o.From != "" && !strings.HasPrefix(o.From, "file://") && !strings.HasPrefix(o.From, "http://") && !strings.HasPrefix(o.From, "https://") {
		return usagef("--from %q: %s: only file:// and http(s):// binary caches are read", o.From, notImplementedMsg)
	}
	if o.StorePaths != nil && o.Flake != "" {
		return usagef("--flake and --store-paths exclude each other")
	}
	if o.StorePaths != nil && (diskoModeGiven || o.VMTest) {
		return usagef("--store-paths cannot be combined with --disko-mode or --vm-test")
	}
	if o.VMTest {
		if o.Flake == "" {
			return usagef("--vm-test needs --flake")
		}
		if o.BuildOn == "remote" || o.ExtraFiles != "" || len(o.KeyFiles) > 0 || o.HardwareConfig != nil {
			return usagef("--vm-test cannot be combined with remote builds, --extra-files, --disk-encryption-keys or --generate-hardware-config")
		}
		return nil
	}
	kexecOnly := len(o.Phases) == 1 && o.Phases[0] == phase.Kexec
	if o.Flake == "" && o.StorePaths == nil && !kexecOnly {
		return usagef("give --flake REF#NAME or --store-paths DISKO SYSTEM")
	}
	if o.conn.Destination == "" {
		return usagef("no host given: nixos-via [flags] [user@]host")
	}
	if _, _, _, err := target.SplitDestination(o.conn.Destination); err != nil {
		return usagef("host: %v", err)
	}
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
	writeFlagGroups(w, installFlags(&Options{}), groups)
	fmt.Fprint(w, `
Environment: SSHPASS (with --env-password), SSH_AUTH_SOCK (ssh-agent).
Exit codes: 0 ok, 1 failure, 2 usage, 3 unreachable, 4 host key mismatch,
5 pre-flight refused, 6 kexec failed (or the hardware config could not be
generated), 7 disko failed, 8 install failed, 9 reboot not confirmed,
130 interrupted; deploy also: 10 rolled back, 11 failed before the host
changed, 12 failed and the host may run the new system.
`)
}

// flagSpec is a flagtable.Flag as cli's tables spell it: every table of
// cli (the connection flags that install, facts and deploy share among
// them) is written with these short field names.
type flagSpec struct {
	name, short string
	shortOnly   bool // shown as -short alone (-i)
	group       string
	arg         string // "" for a switch; "A B" for two arguments
	help        string
	to          any // where the value goes: see flagtable.Flag's To
}

func flagTable(specs []flagSpec) []flagtable.Flag {
	table := make([]flagtable.Flag, len(specs))
	for i, s := range specs {
		table[i] = flagtable.Flag{Name: s.name, Short: s.short, ShortOnly: s.shortOnly, Group: s.group, Arg: s.arg, Help: s.help, To: s.to}
	}
	return table
}

// parseFlags parses args by specs: flagtable.Parse.
func parseFlags(specs []flagSpec, args []string, positional func([]string) error) (*pflag.FlagSet, bool, error) {
	return flagtable.Parse(flagTable(specs), args, positional)
}

// writeFlagGroups prints specs under their group headings, in the order
// of groups: flagtable.WriteGroups.
func writeFlagGroups(w io.Writer, specs []flagSpec, groups []string) {
	flagtable.WriteGroups(w, flagTable(specs), groups)
}

// duration is flagtable.Duration: a flag --name whose value is a positive
// duration.
func duration(dst *time.Duration, name string, more ...*time.Duration) func(string) error {
	return flagtable.Duration(dst, name, more...)
}
