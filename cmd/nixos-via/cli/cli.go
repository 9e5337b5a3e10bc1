// Package cli is the nixos-via command line: flags parsed into the
// sequencer's Plan (package sequence runs the phases), one
// runX(ctx, env, args) error per subcommand, output (progress, plain lines
// or JSON events) and the one exit-code map, ExitCode. It holds no remote
// shell. main calls Run; tests drive the whole CLI in-process through it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nixos-via/nixos-via/deploy"
	"github.com/nixos-via/nixos-via/enter"
	"github.com/nixos-via/nixos-via/fleet"
	"github.com/nixos-via/nixos-via/internal/buildinfo"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/sequence"
)

// Env is everything the CLI takes from its process.
type Env struct {
	Args   []string // without the program name
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// Exit codes, documented in --help and README.md.
const (
	ExitOK            = 0
	ExitFailure       = 1
	ExitUsage         = 2
	ExitUnreachable   = 3
	ExitHostKey       = 4
	ExitRefused       = 5
	ExitKexec         = 6
	ExitDisko         = 7
	ExitInstall       = 8
	ExitReboot        = 9
	ExitInterrupted   = 130
	notImplementedMsg = "not implemented yet"
)

// Exit codes of deploy: rolled back to the previous generation; failed
// before the host's system changed; failed with the host maybe on the new
// one (no magic rollback, or the rollback failed).
const (
	ExitRolledBack      = 10
	ExitDeployUnchanged = 11
	ExitDeployFailed    = 12
)

// PhaseError is a failure inside one phase; the phase picks the exit code.
type PhaseError = phase.Error

// refusal is implemented by pre-flight errors: a check refused to go on
// before anything was touched.
type refusal interface{ Refused() bool }

// ExitCode maps an error of any subcommand to the documented exit code.
func ExitCode(err error) int {
	var (
		ue *UsageError
		mm *target.HostKeyMismatchError
		uk *target.UnknownHostKeyError
		ce *target.ConnectError
		ae *target.AuthError
		we *target.WaitError
		pe *PhaseError
		rf refusal
		rb *deploy.RolledBackError
		de *deploy.Error
		ee *enter.ExitError
		fe *fleet.Error
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &fe):
		return fe.Code
	case errors.As(err, &ee):
		// As nixos-enter: the command's own status, for scripts.
		return min(max(ee.ExitStatus(), 1), 255)
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &mm), errors.As(err, &uk):
		return ExitHostKey
	case errors.As(err, &rf) && rf.Refused():
		return ExitRefused
	case errors.As(err, &rb):
		return ExitRolledBack
	case errors.As(err, &de) && de.Changed:
		return ExitDeployFailed
	case errors.As(err, &de):
		return ExitDeployUnchanged
	case errors.As(err, &pe):
		return phaseExitCode(pe.Phase)
	case errors.As(err, &ce), errors.As(err, &ae), errors.As(err, &we):
		return ExitUnreachable
	}
	return ExitFailure
}

// phaseExitCode is the exit code of a failure inside phase p.
func phaseExitCode(p string) int {
	switch p {
	case phase.Kexec, phase.HardwareConfig:
		// A failed hardware config generation leaves the host in the
		// installer with its disks untouched, as a failed kexec does.
		return ExitKexec
	case phase.Disko:
		return ExitDisko
	case phase.Install:
		return ExitInstall
	case phase.Reboot:
		return ExitReboot
	}
	return ExitFailure
}

// subcommands are the first words that name a subcommand, each run as
// runX(ctx, env, args) with args after that word.
var subcommands = map[string]func(context.Context, Env, []string) error{
	"facts":          runFacts,
	"deploy":         runDeploy,
	"disko":          runDisko,
	"agent":          runAgent,
	"image":          runImage,
	"install-to-dir": runInstallToDir,
	"enter":          runEnter,
	"version":        runVersion,
	"help":           runHelp,
}

// Run runs the command line in env and returns the exit code.
func Run(ctx context.Context, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if len(env.Args) > 0 {
		if run, ok := subcommands[env.Args[0]]; ok {
			return finish(env, run(ctx, env, env.Args[1:]))
		}
	}
	return finish(env, runInstall(ctx, env, env.Args))
}

// commandError is a subcommand's failure as it prints: "prefix: err",
// followed by help when it is a usage error.
type commandError struct {
	prefix string // "nixos-via disko", "nixos-via agent receive"
	help   string
	err    error
}

func (e *commandError) Error() string { return e.prefix + ": " + e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// finish prints err (if any) and returns its exit code.
func finish(env Env, err error) int {
	code := ExitCode(err)
	var ce *commandError
	// An install that stopped after it changed the host says, after the
	// error, where the host is and the command line that goes on.
	var s *sequence.Stopped
	defer func() {
		if errors.As(err, &s) {
			fmt.Fprint(env.Stderr, s.Hint(env.Args, s.Host))
		}
	}()
	var ee *enter.ExitError
	switch {
	case err == nil, errors.As(err, &ee):
		// The command said why it failed on its own stderr.
	case errors.As(err, &ce):
		fmt.Fprintf(env.Stderr, "%s: %v\n", ce.prefix, ce.err)
		if code == ExitUsage {
			fmt.Fprint(env.Stderr, ce.help)
		}
	case code == ExitInterrupted:
		fmt.Fprintln(env.Stderr, "nixos-via: interrupted")
	default:
		fmt.Fprintf(env.Stderr, "nixos-via: %v\n", err)
		if code == ExitUsage {
			fmt.Fprintln(env.Stderr, "Run 'nixos-via --help' for the flags.")
		}
	}
	return code
}

func runVersion(_ context.Context, env Env, _ []string) error {
	fmt.Fprintln(env.Stdout, "nixos-via", buildinfo.Version())
	return nil
}

func runHelp(_ context.Context, env Env, _ []string) error {
	writeHelp(env.Stdout)
	return nil
}

// runInstall is the drop-in nixos-anywhere command.
func runInstall(ctx context.Context, env Env, args []string) error {
	o, help, err := ParseArgs(args)
	if help {
		writeHelp(env.Stdout)
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range o.Deprecated {
		fmt.Fprintln(env.Stderr, "warning:", d)
	}
	if err := checkImplemented(o); err != nil {
		return err
	}
	ui := newUI(env, o.JSON)
	plan, err := o.plan(env, ui)
	if err != nil {
		return err
	}
	return sequence.Run(ctx, plan, ui)
}

// checkImplemented refuses flags this build cannot honour yet,
// so that nothing is silently ignored.
func checkImplemented(o *Options) error {
	if err := o.vmTest(); err != nil {
		return err
	}
	if len(o.SSHStoreSettings) > 0 {
		return usagef("%s: --ssh-store-setting (nixos-via does not use nix's ssh store)", notImplementedMsg)
	}
	return nil
}

// home is the user's home directory for ~/.ssh.
func home(env Env) string {
	if h := env.Getenv("HOME"); h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}
