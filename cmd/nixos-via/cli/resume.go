package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/internal/target"
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

// withResumeHint adds to a *sequence.Stopped the host's state and the
// command to continue: the same arguments, reaching the installer as it
// answers now (its login and port replace the first ones).
func withResumeHint(err error, args []string, host string) error {
	var s *sequence.Stopped
	if !errors.As(err, &s) {
		return err
	}
	hint := "The host now: " + s.State.String() + ".\n"
	switch {
	case s.Rerun:
		hint += "To go on from here once the cause is fixed, run: " + resumeCommand(args, host, s.Login, s.Port) + "\n"
	case s.Advice != "":
		hint += "Next: " + s.Advice + ".\n"
	}
	return &stoppedError{err: err, hint: hint}
}

// resumeCommand is args as a command line, with the host's login replaced
// by login and a port added, where they are set.
func resumeCommand(args []string, host, login string, port int) string {
	newHost := host
	if login != "" {
		if _, h, p, err := target.SplitDestination(host); err == nil {
			newHost = login + "@" + h
			if p != 0 && port == 0 {
				newHost += ":" + strconv.Itoa(p)
			}
		}
	}
	if port != 0 {
		// A port inside the destination would win over -p: drop it.
		if u, h, p, err := target.SplitDestination(newHost); err == nil && p != 0 {
			newHost = h
			if u != "" {
				newHost = u + "@" + h
			}
		}
	}
	words := []string{"nixos-via"}
	for _, a := range args {
		switch {
		case a == host:
			a = newHost
		case a == "--target-host="+host:
			a = "--target-host=" + newHost
		}
		words = append(words, target.ShellQuote(a))
	}
	if port != 0 {
		words = append(words, "-p", fmt.Sprint(port))
	}
	return strings.Join(words, " ")
}
