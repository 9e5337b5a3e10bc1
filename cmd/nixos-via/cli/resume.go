package cli

import (
	"errors"

	"github.com/nixos-via/nixos-via/sequence"
)

// stoppedError is an install that stopped after it changed the host,
// printed with where the host is and the command that goes on.
type stoppedError struct {
	err  error
	hint string
}

func (e *stoppedError) Error() string { return e.err.Error() }
func (e *stoppedError) Unwrap() error { return e.err }

// withResumeHint adds to a *sequence.Stopped its Hint: the host's state
// and the command to continue.
func withResumeHint(err error, args []string, host string) error {
	var s *sequence.Stopped
	if !errors.As(err, &s) {
		return err
	}
	return &stoppedError{err: err, hint: s.Hint(args, host)}
}
