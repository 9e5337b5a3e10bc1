// Package sequence runs one install: a Plan (what the command line
// decided) through the phases in order for one host. Local work comes
// first (evaluate and render the layout, build the system), then the
// first connection and the checks that touch nothing (the layout's disks,
// the wipe list and its confirmation), then kexec, the hardware-config
// step, disko, install and reboot (packages kexec, hwconfig, diskorun,
// install, reboot), each a failure of its own phase (*phase.Error).
// Progress goes to an event.Sink; nothing here prints or reads the
// terminal itself: the confirmation and the terminal for passphrases come
// in the Plan. A run that stops after it changed the host returns a
// *Stopped, which says where the host is and (Hint, ResumeCommand) the
// command line that goes on from there.
package sequence

import (
	"time"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/hwconfig"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/kexec"
)

// Plan is everything one install needs to know before it starts.
type Plan struct {
	// Host is the destination as given, Target how to reach it (secrets
	// and prompts already filled in), Home the user's home for ~/.ssh.
	Host           string
	Target         target.Options
	Home           string
	ConnectTimeout time.Duration // the first connection's deadline
	Phases         []string      // of phase.All(), in that order

	Nix       nix.CLI // runs the local evaluation and build
	Flake     string  // REF#NAME as given
	FlakeRef  string  // REF
	FlakeAttr string  // nixosConfigurations."NAME".config
	// StorePaths, when set, is a prebuilt system (--store-paths) instead
	// of the flake.
	StorePaths *StorePaths
	// From, when set, is the store the closure comes from instead of the
	// local one (--from: a file:// or http(s):// binary cache, an ssh:// or
	// ssh-ng:// host); the system
	// is then evaluated (or --store-paths' SYSTEM), never built here.
	From      string
	DiskoMode string // disko (wipe, format, mount), format or mount
	// BuildOn is where the system is built: BuildOnAuto ("" too),
	// BuildOnLocal or BuildOnRemote (--build-on).
	BuildOn string

	// KeyFiles are copied to the installer before the disko script.
	KeyFiles []diskorun.KeyFile
	// HardwareConfig, when set, runs after kexec; the evaluation and
	// build then wait for its file (unless StorePaths is set).
	HardwareConfig *hwconfig.Options
	// Kexec are the kexec phase's options; Facts, Tarball and Home are
	// filled in by Run.
	Kexec kexec.Options
	// Reinstall kexecs and erases a host that already runs the very
	// system built (--reinstall); without it such a run only says so.
	Reinstall bool

	Agent        string // --agent: the local agent binary ("": this executable)
	CopyJobs     int
	ExtraFiles   string
	Chown        []install.Ownership
	CopyHostKeys bool

	// Substitute lets the target fetch what binary caches have of the
	// closure itself (on unless --no-substitute-on-destination); with
	// MachineSubstituters the configuration's nix.settings.substituters
	// join the local Nix's (unless --no-use-machine-substituters).
	Substitute, MachineSubstituters bool

	RebootTimeout time.Duration

	// Terminal is where a LUKS passphrase is typed; nil when there is no
	// terminal.
	Terminal *diskorun.Terminal
	// Confirm asks before the wipe; nil wipes without asking (--yes, or no
	// terminal). Its error (a *phase.Refusal) stops the run.
	Confirm func() error

	// VM, when set, is the throwaway local VM the run installs into
	// instead of a host (--vm-test, package localvm).
	VM VM
}

// StorePaths is a prebuilt disko script and system toplevel.
type StorePaths struct{ Disko, System string }

// Has says whether the plan runs phase p.
func (p *Plan) Has(ph string) bool {
	for _, x := range p.Phases {
		if x == ph {
			return true
		}
	}
	return false
}

// wipes says the disko mode destroys the disks first.
func (p *Plan) wipes() bool { return p.DiskoMode == "disko" || p.DiskoMode == "" }
