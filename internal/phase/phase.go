// Package phase names the steps of an install and the two errors every
// step shares: a Refusal (a check stopped the run before anything on the
// host was touched) and an Error (a step failed; which one picks the exit
// code). The steps themselves live in their own packages (kexec,
// diskorun, install, reboot, hwconfig); the sequencer runs them in order.
package phase

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The names of the phases and steps, as --phases, events and errors
// spell them.
const (
	Kexec          = "kexec"
	Disko          = "disko"
	Install        = "install"
	Reboot         = "reboot"
	HardwareConfig = "hardware-config" // --generate-hardware-config's step, after kexec
	Probe          = "probe"           // the first connection and the host's facts
	Build          = "build"           // local evaluation and build
	Done           = "done"            // the end of a run
)

// All are the phases --phases selects from, in the order they run.
func All() []string { return []string{Kexec, Disko, Install, Reboot} }

// Error is a failure inside one phase; the phase picks the exit code.
type Error struct {
	Phase string
	Err   error
}

func (e *Error) Error() string { return e.Phase + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Refusal is a check that stopped the run before anything on the host was
// touched (the pre-flight exit code): the host cannot kexec, lacks a
// disk, a tool or a key file, or nobody confirmed the wipe. Check names
// it ("memory", "disks", "confirm", "disko" ...); Msg says why, or
// Problems lists every reason when there are several.
type Refusal struct {
	Check    string
	Msg      string
	Problems []string
}

func (r *Refusal) Error() string {
	if len(r.Problems) > 0 {
		return fmt.Sprintf("pre-flight %s: nothing was touched: %s", r.Check, strings.Join(r.Problems, "; "))
	}
	return fmt.Sprintf("pre-flight %s: %s", r.Check, r.Msg)
}

// Refused marks the error as a pre-flight refusal.
func (r *Refusal) Refused() bool { return true }

// UsageError is a bad input the user gave (a flag's value, a file it
// names): the run stops before anything on the host is touched, with the
// usage exit code.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef is a *UsageError with a formatted message.
func Usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// CleanupTimeout bounds the undoing of a step's traces on the host after
// the step failed or was interrupted.
const CleanupTimeout = 20 * time.Second

// CleanupContext is the context for undoing a step's traces on the host
// (a work directory, a throwaway key): it survives the cancellation of
// ctx — a Ctrl-C must still clean up — but ends after CleanupTimeout, so
// a dead connection cannot hold the exit.
func CleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
}
