// Package cli is the nixos-via command line: flags, wiring of the phases,
// output (progress, plain lines or JSON events) and exit codes. main calls
// Run; tests drive the whole CLI in-process through it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
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

// PhaseError is a failure inside one phase; the phase picks the exit code.
type PhaseError struct {
	Phase string
	Err   error
}

func (e *PhaseError) Error() string { return e.Phase + ": " + e.Err.Error() }
func (e *PhaseError) Unwrap() error { return e.Err }

// refusal is implemented by pre-flight errors: a check refused to go on
// before anything was touched.
type refusal interface{ Refused() bool }

// ExitCode maps an error to the documented exit code.
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
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &mm), errors.As(err, &uk):
		return ExitHostKey
	case errors.As(err, &rf) && rf.Refused():
		return ExitRefused
	case errors.As(err, &pe):
		switch pe.Phase {
		case "kexec", phase.HardwareConfig:
			// A failed hardware config generation leaves the host in the
			// installer with its disks untouched, as a failed kexec does.
			return ExitKexec
		case "disko":
			return ExitDisko
		case "install":
			return ExitInstall
		case "reboot":
			return ExitReboot
		}
	case errors.As(err, &ce), errors.As(err, &ae), errors.As(err, &we):
		return ExitUnreachable
	}
	return ExitFailure
}

// Run runs the command line in env and returns the exit code.
func Run(ctx context.Context, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	args := env.Args
	if len(args) > 0 {
		switch args[0] {
		case "facts":
			return finish(env, runFacts(ctx, env, args[1:]))
		case "disko":
			return runDisko(ctx, env, args[1:])
		case "agent":
			return runAgent(ctx, env, args[1:])
		case "image":
			return runImage(ctx, env, args[1:])
		case "version":
			fmt.Fprintln(env.Stdout, "nixos-via", Version())
			return ExitOK
		case "help":
			writeHelp(env.Stdout)
			return ExitOK
		}
	}
	return finish(env, runInstall(ctx, env, args))
}

// finish prints err (if any) and returns its exit code.
func finish(env Env, err error) int {
	code := ExitCode(err)
	if err != nil {
		if code == ExitInterrupted {
			fmt.Fprintln(env.Stderr, "nixos-via: interrupted")
		} else {
			fmt.Fprintf(env.Stderr, "nixos-via: %v\n", err)
		}
		if code == ExitUsage {
			fmt.Fprintln(env.Stderr, "Run 'nixos-via --help' for the flags.")
		}
	}
	return code
}

// Version is the module version of the build, or "dev".
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				if v == "" || v == "(devel)" {
					v = "dev-" + s.Value[:12]
				}
			}
		}
		if v != "" && v != "(devel)" {
			return v
		}
	}
	return "dev"
}

// phaseImplemented says whether this build can run phase p. Others are
// refused with a clear message before anything is touched.
func phaseImplemented(p string) bool {
	switch p {
	case "kexec", "disko", "install", "reboot":
		return true
	}
	return false
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
	f := &flow{o: o, env: env, ui: newUI(env, o.JSON)}
	return f.run(ctx)
}

// checkImplemented refuses flags and phases this build cannot honour yet,
// so that nothing is silently ignored.
func checkImplemented(o *Options) error {
	var missing []string
	if o.VMTest {
		missing = append(missing, "--vm-test")
	}
	if o.From != "" {
		missing = append(missing, "--from")
	}
	if o.BuildOn == "remote" {
		missing = append(missing, "--build-on remote")
	}
	if len(o.SSHStoreSettings) > 0 {
		missing = append(missing, "--ssh-store-setting (nixos-via does not use nix's ssh store)")
	}
	for _, p := range o.Phases {
		if !phaseImplemented(p) {
			missing = append(missing, "phase "+p)
		}
	}
	if len(missing) > 0 {
		return usagef("%s: %s", notImplementedMsg, strings.Join(missing, ", "))
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
