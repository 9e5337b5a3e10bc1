package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/hwconfig"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// StorePaths is -s/--store-paths DISKO SYSTEM: a prebuilt disko script
// and system toplevel.
type StorePaths struct{ Disko, System string }

// NixOption is --option NAME VALUE (or --ssh-store-setting NAME VALUE).
type NixOption struct{ Name, Value string }

// KeyFile is --disk-encryption-keys REMOTE LOCAL: the LOCAL file is
// copied to REMOTE in the installer's RAM.
type KeyFile = diskorun.KeyFile

// Chown is --chown PATH OWNER in the installed root.
type Chown = install.Ownership

// HardwareConfig is --generate-hardware-config TOOL PATH.
type HardwareConfig struct{ Tool, Path string }

// twoArgs is the value of a two-argument flag, as given.
type twoArgs [2]string

// Options is the parsed drop-in command line.
type Options struct {
	connFlags // how to reach the host, shared with facts

	Flake         string // as given, REF#NAME
	FlakeRef      string // REF
	FlakeAttr     string // expanded attribute: nixosConfigurations."NAME".config
	StorePaths    *StorePaths
	PrintBuildLog bool

	Kexec           string
	KexecSHA256     string
	ForceKexec      bool
	KexecExtraFlags string
	PostKexecPort   int

	SSHStoreSettings  []NixOption
	CopyHostKeys      bool
	ExtraFiles        string
	Chown             []Chown
	DiskEncryptionKey []KeyFile
	NoSubstitute      bool
	NoMachineSubst    bool
	ShowTrace         bool
	NixOptions        []NixOption
	From              string
	BuildOn           string
	VMTest            bool
	GenerateHWConfig  *HardwareConfig
	Phases            []string
	DiskoMode         string
	NoDiskoDeps       bool
	CopyJobs          int
	Agent             string

	JSON bool
	Yes  bool

	TimeoutKexec  time.Duration
	TimeoutReboot time.Duration

	Deprecated []string // warnings for deprecated flags that were used
}

// flagSpec describes one flag for parsing and for --help.
type flagSpec struct {
	name, short string
	group       string
	arg         string // "" for a switch; "A B" for two arguments
	help        string
	hidden      bool
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

// connSpecs are the flags that say how to reach the host, shared by the
// drop-in command line and facts.
func connSpecs() []flagSpec {
	return []flagSpec{
		{name: "target-host", group: gTarget, arg: "HOST", help: "the host to install, as [user@]host[:port] (same as the positional HOST)"},
		{name: "i", group: gTarget, arg: "KEY", help: "private key file for SSH (asks for its passphrase on a terminal)"},
		{name: "ssh-port", short: "p", group: gTarget, arg: "PORT", help: "SSH port (default 22 or ssh_config's)"},
		{name: "ssh-option", group: gTarget, arg: "OPT", help: "an OpenSSH -o option, e.g. ProxyJump=bastion, \"ProxyCommand=nc %h %p\", HostKeyAlgorithms=ssh-ed25519 (repeatable)"},
		{name: "env-password", group: gTarget, help: "authenticate with the password in $SSHPASS"},
		{name: "host-key", group: gTarget, arg: "SHA256:FP", help: "accept only host keys with these fingerprints (repeatable; after kexec, any key of the host's set)"},
		{name: "sudo-password-env", group: gTarget, arg: "VAR", help: "read the sudo password of a non-root login from $VAR (else asked on a terminal)"},
	}
}

// timeoutConnectSpec is --timeout-connect, also shared.
var timeoutConnectSpec = flagSpec{name: "timeout-connect", group: gOut, arg: "DUR", help: "deadline for the first SSH connection (default 2m)"}

// specs is every flag of the drop-in command line.
func specs() []flagSpec {
	return append(connSpecs(), []flagSpec{
		{name: "post-kexec-ssh-port", group: gTarget, arg: "PORT", help: "SSH port of the installer after kexec (default 22, with or without -p)"},

		{name: "flake", short: "f", group: gBuild, arg: "REF#NAME", help: "flake to install: nixosConfigurations.NAME of REF"},
		{name: "store-paths", short: "s", group: gBuild, arg: "DISKO SYSTEM", help: "install prebuilt paths: a disko script and a system toplevel"},
		{name: "print-build-logs", short: "L", group: gBuild, help: "print full build logs"},
		{name: "option", group: gBuild, arg: "KEY VALUE", help: "a Nix option for every nix call (repeatable)"},
		{name: "show-trace", group: gBuild, help: "show Nix evaluation traces"},
		{name: "build-on", group: gBuild, arg: "WHERE", help: "where to build: auto, local or remote (default auto)"},
		{name: "from", group: gBuild, arg: "STORE", help: "copy the closure from this store instead of the local one (not implemented yet)"},
		{name: "no-substitute-on-destination", group: gBuild, help: "stream the whole closure from here (by default the target fetches what the binary caches have itself: the local Nix's substituters after --option, and the configuration's nix.settings.substituters; http(s) only, checked against the local narHash); implies --no-use-machine-substituters"},
		{name: "no-use-machine-substituters", group: gBuild, help: "the target substitutes from the local Nix's substituters only, not also from the configuration's nix.settings.substituters"},
		{name: "ssh-store-setting", group: gBuild, arg: "KEY VALUE", help: "a setting of nix's ssh store (not implemented yet: nixos-via does not use nix's ssh store)"},
		{name: "vm-test", group: gBuild, help: "only build and run the flake's disko VM install test, locally"},
		{name: "generate-hardware-config", group: gBuild, arg: "TOOL PATH", help: "after kexec, write the output of TOOL (nixos-facter or nixos-generate-config) on the target to PATH; the build waits for it"},

		{name: "kexec", group: gKexec, arg: "URL|FILE", help: "installer tarball (default: the nixos-images release for the target's arch)"},
		{name: "kexec-sha256", group: gKexec, arg: "HEX", help: "refuse a tarball whose sha256 differs"},
		{name: "force-kexec", group: gKexec, help: "kexec even when the target already runs an installer"},
		{name: "kexec-extra-flags", group: gKexec, arg: "FLAGS", help: "extra flags for kexec --load and kexec -e (e.g. --no-sync)"},

		{name: "disk-encryption-keys", group: gDisko, arg: "REMOTE LOCAL", help: "copy the LOCAL key file to REMOTE in the installer's RAM before disko (repeatable)"},
		{name: "disko-mode", group: gDisko, arg: "MODE", help: "disko (wipe, format, mount; default), format, or mount"},
		{name: "no-disko-deps", group: gDisko, help: "accepted for compatibility: the rendered script never uploads tool dependencies"},

		{name: "extra-files", group: gInst, arg: "DIR", help: "copy DIR's contents into the installed root, modes kept, owned by root"},
		{name: "chown", group: gInst, arg: "PATH OWNER", help: "chown -R OWNER PATH in the installed root after --extra-files (repeatable)"},
		{name: "copy-host-keys", group: gInst, help: "give the installed system the host's current SSH host keys"},
		{name: "copy-jobs", group: gInst, arg: "N", help: "parallel streams for the closure copy (default 2)"},
		{name: "agent", group: gInst, arg: "FILE", help: "static nixos-via binary to run on the target (default: this one, if static and of its arch)"},

		{name: "phases", group: gFlow, arg: "LIST", help: "comma list of kexec,disko,install,reboot (default all)"},
		{name: "yes", short: "y", group: gFlow, help: "do not ask before wiping the disks the layout names"},

		{name: "json", group: gOut, help: "print one JSON event per line on stdout instead of progress text"},
		{name: "debug", group: gOut, help: "print every remote command and more detail"},
		timeoutConnectSpec,
		{name: "timeout-kexec", group: gOut, arg: "DUR", help: "deadline for the host to go down and the installer to answer (default 10m)"},
		{name: "timeout-reboot", group: gOut, arg: "DUR", help: "deadline for the installed system to answer after reboot (default 15m); one waiting for its LUKS passphrase is reported as waiting then, not as failed"},
		{name: "help", short: "h", group: gOut, help: "show this help"},

		{name: "no-reboot", group: gDep, help: "= --phases kexec,disko,install"},
		{name: "stop-after-disko", group: gDep, help: "= --phases kexec,disko"},
		{name: "build-on-remote", group: gDep, help: "= --build-on remote"},
		{name: "tty", short: "t", group: gDep, help: "ignored: terminals are detected"},
	}...)
}

func takesTwo(s flagSpec) bool { return strings.Contains(s.arg, " ") }

// UsageError is a bad command line: exit 2 with the reason.
type UsageError = phase.UsageError

func usagef(format string, a ...any) error { return phase.Usagef(format, a...) }

// newFlagSet registers every one-argument flag and switch with pflag.
// Two-argument flags are taken out before pflag sees the arguments.
func newFlagSet(name string, list []flagSpec) (*pflag.FlagSet, map[string]flagSpec) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(true)
	byName := map[string]flagSpec{}
	for _, s := range list {
		byName["--"+s.name] = s
		if len(s.name) == 1 {
			byName["-"+s.name] = s
		}
		if s.short != "" {
			byName["-"+s.short] = s
		}
		if takesTwo(s) {
			continue
		}
		name, short := s.name, s.short
		if len(name) == 1 { // -i: pflag wants single letters as shorthands
			name, short = "identity-file", s.name
		}
		switch {
		case s.arg == "":
			fs.BoolP(name, short, false, s.help)
		case s.name == "ssh-option" || s.name == "host-key":
			fs.StringArrayP(name, short, nil, s.help)
		default:
			fs.StringP(name, short, "", s.help)
		}
	}
	return fs, byName
}

// splitTwoArgFlags takes the two-argument flags out of args, because pflag
// knows only flags of one argument. It knows which other flags take a value,
// so a value that looks like a flag is never misread.
func splitTwoArgFlags(args []string, byName map[string]flagSpec) (rest []string, pairs map[string][]twoArgs, err error) {
	pairs = map[string][]twoArgs{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, _, hasValue := strings.Cut(a, "=")
		s, known := byName[name]
		if !known || !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		if takesTwo(s) {
			if hasValue {
				return nil, nil, usagef("%s takes two arguments (%s), not %s=...", name, s.arg, name)
			}
			if i+2 >= len(args) {
				return nil, nil, usagef("%s needs two arguments: %s %s", name, name, s.arg)
			}
			pairs[s.name] = append(pairs[s.name], twoArgs{args[i+1], args[i+2]})
			i += 2
			continue
		}
		rest = append(rest, a)
		if s.arg != "" && !hasValue && i+1 < len(args) {
			// The next argument is this flag's value, whatever it looks like.
			i++
			rest = append(rest, args[i])
		}
	}
	return rest, pairs, nil
}

// ParseArgs parses the drop-in command line. It reports usage errors as
// *UsageError and wants help when the result's second value is true.
func ParseArgs(args []string) (*Options, bool, error) {
	fs, byName := newFlagSet("nixos-via", specs())
	rest, pairs, err := splitTwoArgFlags(args, byName)
	if err != nil {
		return nil, false, err
	}
	if err := fs.Parse(rest); err != nil {
		return nil, false, usagef("%v", err)
	}
	if b, _ := fs.GetBool("help"); b {
		return nil, true, nil
	}
	a := argv{fs: fs, pairs: pairs}
	o := &Options{}
	for _, parse := range []func(*Options) error{a.target, a.build, a.phaseFlags, a.output, a.phases, a.deprecated, a.choices} {
		if err := parse(o); err != nil {
			return nil, false, err
		}
	}
	if err := a.combinations(o); err != nil {
		return nil, false, err
	}
	return o, false, nil
}

// argv is the parsed command line, read flag by flag into Options.
type argv struct {
	fs    *pflag.FlagSet
	pairs map[string][]twoArgs
}

func (a argv) str(n string) string       { v, _ := a.fs.GetString(n); return v }
func (a argv) boolean(n string) bool     { v, _ := a.fs.GetBool(n); return v }
func (a argv) changed(n string) bool     { return a.fs.Changed(n) }
func (a argv) strings(n string) []string { v, _ := a.fs.GetStringArray(n); return v }

// target reads the host and how to reach it.
func (a argv) target(o *Options) error {
	o.Host = a.str("target-host")
	switch pos := a.fs.Args(); len(pos) {
	case 0:
	case 1:
		if o.Host != "" && o.Host != pos[0] {
			return usagef("two hosts given: --target-host %s and %s", o.Host, pos[0])
		}
		o.Host = pos[0]
	default:
		return usagef("only one host may be given, got %q", pos)
	}
	if err := a.conn(&o.connFlags); err != nil {
		return err
	}
	if a.changed("post-kexec-ssh-port") {
		p, err := parsePort(a.str("post-kexec-ssh-port"))
		if err != nil {
			return usagef("--post-kexec-ssh-port: %v", err)
		}
		o.PostKexecPort = p
	}
	return nil
}

// conn reads the connection flags but the host.
func (a argv) conn(c *connFlags) error {
	c.IdentityFile = a.str("identity-file")
	if a.changed("ssh-port") {
		p, err := parsePort(a.str("ssh-port"))
		if err != nil {
			return usagef("-p/--ssh-port: %v", err)
		}
		c.Port = p
	}
	c.SSHOptions = a.strings("ssh-option")
	if err := target.CheckSSHOptions(c.SSHOptions); err != nil {
		return usagef("--ssh-option: %v", err)
	}
	c.EnvPassword = a.boolean("env-password")
	c.HostKeys = a.strings("host-key")
	for _, fp := range c.HostKeys {
		if !strings.HasPrefix(fp, "SHA256:") {
			return usagef("--host-key %q: want a SHA256:... fingerprint as ssh-keygen -lf prints it", fp)
		}
	}
	if len(c.HostKeys) > 0 {
		c.HostKey = c.HostKeys[0]
	}
	c.SudoPasswordEnv = a.str("sudo-password-env")
	c.TimeoutConnect = 2 * time.Minute
	if a.changed("timeout-connect") {
		v, err := time.ParseDuration(a.str("timeout-connect"))
		if err != nil || v <= 0 {
			return usagef("--timeout-connect %q: want a duration like 90s or 5m", a.str("timeout-connect"))
		}
		c.TimeoutConnect = v
	}
	return nil
}

// build reads what to install and how to build it.
func (a argv) build(o *Options) error {
	o.Flake = a.str("flake")
	if o.Flake != "" {
		ref, attr, err := expandFlake(o.Flake)
		if err != nil {
			return err
		}
		o.FlakeRef, o.FlakeAttr = ref, attr
	}
	if ps := a.pairs["store-paths"]; len(ps) > 0 {
		if len(ps) > 1 {
			return usagef("-s/--store-paths given twice")
		}
		o.StorePaths = &StorePaths{Disko: ps[0][0], System: ps[0][1]}
	}
	o.PrintBuildLog = a.boolean("print-build-logs")
	o.NixOptions = nixOptions(a.pairs["option"])
	o.ShowTrace = a.boolean("show-trace")
	o.BuildOn = a.str("build-on")
	o.From = a.str("from")
	o.NoSubstitute = a.boolean("no-substitute-on-destination")
	o.NoMachineSubst = a.boolean("no-use-machine-substituters") || o.NoSubstitute
	o.SSHStoreSettings = nixOptions(a.pairs["ssh-store-setting"])
	o.VMTest = a.boolean("vm-test")
	if g := a.pairs["generate-hardware-config"]; len(g) > 0 {
		last := g[len(g)-1] // the last one wins, as in nixos-anywhere
		hw := HardwareConfig{Tool: last[0], Path: last[1]}
		if _, err := hwconfig.Command(hw.Tool); err != nil {
			return err
		}
		if hw.Path == "" {
			return usagef("--generate-hardware-config %s: empty path", hw.Tool)
		}
		o.GenerateHWConfig = &hw
	}
	return nil
}

// phaseFlags reads the kexec, disko and install phases' flags.
func (a argv) phaseFlags(o *Options) error {
	o.Kexec = a.str("kexec")
	o.KexecSHA256 = strings.ToLower(a.str("kexec-sha256"))
	o.ForceKexec = a.boolean("force-kexec")
	o.KexecExtraFlags = a.str("kexec-extra-flags")
	for _, p := range a.pairs["disk-encryption-keys"] {
		k := KeyFile{Remote: p[0], Local: p[1]}
		if !strings.HasPrefix(k.Remote, "/") {
			return usagef("--disk-encryption-keys %s %s: the remote path must be absolute", k.Remote, k.Local)
		}
		o.DiskEncryptionKey = append(o.DiskEncryptionKey, k)
	}
	o.DiskoMode = a.str("disko-mode")
	o.NoDiskoDeps = a.boolean("no-disko-deps")
	o.ExtraFiles = a.str("extra-files")
	for _, p := range a.pairs["chown"] {
		o.Chown = append(o.Chown, Chown{Path: p[0], Owner: p[1]})
	}
	o.CopyHostKeys = a.boolean("copy-host-keys")
	o.Agent = a.str("agent")
	o.CopyJobs = 2
	if a.changed("copy-jobs") {
		n, err := strconv.Atoi(a.str("copy-jobs"))
		if err != nil || n < 1 || n > 64 {
			return usagef("--copy-jobs %q: want a number from 1 to 64", a.str("copy-jobs"))
		}
		o.CopyJobs = n
	}
	return nil
}

// output reads the output flags and the deadlines.
func (a argv) output(o *Options) error {
	o.Yes = a.boolean("yes")
	o.JSON = a.boolean("json")
	o.Debug = a.boolean("debug")
	if o.Debug {
		o.PrintBuildLog = true
	}
	for _, d := range []struct {
		flag string
		dst  *time.Duration
		def  time.Duration
	}{
		{"timeout-kexec", &o.TimeoutKexec, 10 * time.Minute},
		{"timeout-reboot", &o.TimeoutReboot, 15 * time.Minute},
	} {
		*d.dst = d.def
		if a.changed(d.flag) {
			v, err := time.ParseDuration(a.str(d.flag))
			if err != nil || v <= 0 {
				return usagef("--%s %q: want a duration like 90s or 5m", d.flag, a.str(d.flag))
			}
			*d.dst = v
		}
	}
	return nil
}

// phases reads --phases.
func (a argv) phases(o *Options) error {
	o.Phases = phase.All()
	if !a.changed("phases") {
		return nil
	}
	o.Phases = nil
	for _, p := range strings.Split(a.str("phases"), ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !contains(phase.All(), p) {
			return usagef("--phases: unknown phase %q (want kexec, disko, install, reboot)", p)
		}
		if !contains(o.Phases, p) {
			o.Phases = append(o.Phases, p)
		}
	}
	if len(o.Phases) == 0 {
		return usagef("--phases: no phase given")
	}
	return nil
}

// deprecated reads the deprecated shorthands, with their warnings.
func (a argv) deprecated(o *Options) error {
	if a.boolean("no-reboot") {
		o.Deprecated = append(o.Deprecated, "--no-reboot is deprecated: use --phases kexec,disko,install")
		o.Phases = []string{phase.Kexec, phase.Disko, phase.Install}
	}
	if a.boolean("stop-after-disko") {
		o.Deprecated = append(o.Deprecated, "--stop-after-disko is deprecated: use --phases kexec,disko")
		o.Phases = []string{phase.Kexec, phase.Disko}
	}
	if a.boolean("build-on-remote") {
		o.Deprecated = append(o.Deprecated, "--build-on-remote is deprecated: use --build-on remote")
		if o.BuildOn == "local" {
			return usagef("--build-on-remote conflicts with --build-on local")
		}
		o.BuildOn = "remote"
	}
	if a.boolean("tty") {
		o.Deprecated = append(o.Deprecated, "-t/--tty is deprecated and ignored: terminals are detected")
	}
	return nil
}

// choices checks the flags that take one of a few words.
func (a argv) choices(o *Options) error {
	if o.BuildOn == "" {
		o.BuildOn = "auto"
	}
	if !contains([]string{"auto", "local", "remote"}, o.BuildOn) {
		return usagef("--build-on %q: want auto, local or remote", o.BuildOn)
	}
	if o.DiskoMode == "" {
		o.DiskoMode = "disko"
	}
	if !contains([]string{"disko", "format", "mount"}, o.DiskoMode) {
		return usagef("--disko-mode %q: want disko, format or mount", o.DiskoMode)
	}
	return nil
}

// combinations checks the flags together, as upstream does.
func (a argv) combinations(o *Options) error {
	if o.StorePaths != nil && o.Flake != "" {
		return usagef("--flake and --store-paths exclude each other")
	}
	if o.StorePaths != nil && (a.changed("disko-mode") || o.VMTest) {
		return usagef("--store-paths cannot be combined with --disko-mode or --vm-test")
	}
	if o.VMTest {
		if o.Flake == "" {
			return usagef("--vm-test needs --flake")
		}
		if o.BuildOn == "remote" || o.ExtraFiles != "" || len(o.DiskEncryptionKey) > 0 || o.GenerateHWConfig != nil {
			return usagef("--vm-test cannot be combined with remote builds, --extra-files, --disk-encryption-keys or --generate-hardware-config")
		}
		return nil
	}
	kexecOnly := len(o.Phases) == 1 && o.Phases[0] == phase.Kexec
	if o.Flake == "" && o.StorePaths == nil && !kexecOnly {
		return usagef("give --flake REF#NAME or --store-paths DISKO SYSTEM")
	}
	if o.Host == "" {
		return usagef("no host given: nixos-via [flags] [user@]host")
	}
	if _, _, _, err := target.SplitDestination(o.Host); err != nil {
		return usagef("host: %v", err)
	}
	return nil
}

// nixOptions are the NAME VALUE pairs of --option or --ssh-store-setting.
func nixOptions(pairs []twoArgs) []NixOption {
	var out []NixOption
	for _, p := range pairs {
		out = append(out, NixOption{Name: p[0], Value: p[1]})
	}
	return out
}

// expandFlake splits REF#NAME and expands NAME as nixos-anywhere does.
func expandFlake(flake string) (ref, attr string, err error) {
	i := strings.LastIndex(flake, "#")
	if i < 0 || i == len(flake)-1 {
		return "", "", usagef("--flake %q: missing #NAME: please specify the configuration, e.g. .#myhost", flake)
	}
	ref, name := flake[:i], flake[i+1:]
	if ref == "" {
		ref = "."
	}
	if strings.HasPrefix(name, "nixosConfigurations.") {
		return ref, name, nil
	}
	return ref, fmt.Sprintf("nixosConfigurations.%q.config", name), nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// writeHelp prints the grouped flag list.
func writeHelp(w io.Writer) {
	fmt.Fprint(w, `nixos-via installs NixOS on a machine you reach over SSH: it builds the
configuration locally, kexecs the host into an installer, partitions its disks
from the disko layout, streams the system closure and reboots into it.

Usage:
  nixos-via [flags] [user@]HOST         install (drop-in for nixos-anywhere)
  nixos-via facts [--json] [user@]HOST  show what the host is (arch, RAM, firmware, disks ...)
  nixos-via disko --layout FILE ...     validate or render a disko layout
  nixos-via image installer|provider    build installer or test images
  nixos-via version                     print the version

A first word that is a subcommand name is the subcommand; to install onto a
host that is literally named like one, write user@name or --target-host name.
`)
	byGroup := map[string][]flagSpec{}
	for _, s := range specs() {
		if !s.hidden {
			byGroup[s.group] = append(byGroup[s.group], s)
		}
	}
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g)
		for _, s := range byGroup[g] {
			var left string
			switch {
			case s.short != "":
				left = fmt.Sprintf("-%s, --%s", s.short, s.name)
			case len(s.name) == 1:
				left = "-" + s.name
			default:
				left = "    --" + s.name
			}
			if s.arg != "" {
				left += " " + s.arg
			}
			fmt.Fprintf(w, "  %-40s %s\n", left, s.help)
		}
	}
	fmt.Fprint(w, `
Environment: SSHPASS (with --env-password), SSH_AUTH_SOCK (ssh-agent).
Exit codes: 0 ok, 1 failure, 2 usage, 3 unreachable, 4 host key mismatch,
5 pre-flight refused, 6 kexec failed (or the hardware config could not be
generated), 7 disko failed, 8 install failed, 9 reboot not confirmed,
130 interrupted.
`)
}
