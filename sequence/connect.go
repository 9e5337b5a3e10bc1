package sequence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Connect dials the host described by opts, retrying until timeout while
// it does not answer yet, probes its facts and escalates with sudo/doas
// when the login is not root (asking opts.Prompt for a sudo password the
// host wants and opts lacks). A bad option is a *phase.UsageError.
func Connect(ctx context.Context, opts target.Options, home string, timeout time.Duration) (*target.Conn, *target.Facts, error) {
	res, err := opts.Resolve(home)
	if err != nil {
		return nil, nil, phase.Usagef("%v", err)
	}
	conn, err := target.ReachHost(ctx, res, home, target.Reach{What: "up", Timeout: timeout, Retry: unreachableOnly})
	if err != nil {
		return nil, nil, err
	}
	facts, err := conn.ProbeFacts(ctx)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if facts.SudoPassword && opts.SudoPassword == "" && opts.Prompt != nil {
		pw, err := opts.Prompt(fmt.Sprintf("[sudo] password for %s@%s: ", facts.User, res.HostName), false)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		res.SudoPassword = pw
	}
	conn.SetEscalation(target.Escalation(facts.Escalation), facts.SudoPassword)
	return conn, facts, nil
}

// unreachableOnly waits out a host that does not answer (yet) and stops at
// anything else: refused credentials and host keys fail at once.
func unreachableOnly(_ int, err error) error {
	var ce *target.ConnectError
	if errors.As(err, &ce) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}
