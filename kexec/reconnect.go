package kexec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Reconnect waits for the host to go down and for the installer to answer,
// as root, with a key of the host's own key set (old.HostKeys: the key it
// presented and the others it has; the installer carries them over but its
// sshd may offer only some types). It returns the new connection and the
// installer's facts.
func Reconnect(ctx context.Context, old *target.Conn, opts Options) (*target.Conn, *target.Facts, error) {
	events := opts.Events
	if events == nil {
		events = event.Discard{}
	}
	if opts.Interval == 0 {
		opts.Interval = 2 * time.Second
	}
	before := old.Resolved()
	keys := old.HostKeys()
	events.Emit(event.Event{Phase: phase.Kexec, Kind: event.Step, Msg: "waiting for the host to go down"})
	if err := old.WaitDown(ctx, opts.DownTimeout, time.Second); err != nil {
		return nil, nil, &Error{Step: "reconnect", Err: err}
	}
	ports := []int{before.Port}
	if opts.PostKexecPort != 0 {
		ports = []int{opts.PostKexecPort}
	} else if before.Port != 22 {
		ports = append(ports, 22)
	}
	events.Emit(event.Event{Phase: phase.Kexec, Kind: event.Step, Msg: fmt.Sprintf("waiting for the installer on %s port %s", before.HostName, joinInts(ports))})
	conn, err := waitInstaller(ctx, before, keys, ports, opts)
	if err != nil {
		return nil, nil, err
	}
	facts, err := conn.ProbeFacts(ctx)
	if err != nil {
		conn.Close()
		return nil, nil, &Error{Step: "verify", Err: err}
	}
	if !facts.IsInstaller {
		conn.Close()
		return nil, nil, &Error{Step: "verify", Err: fmt.Errorf("the host answered with its own host key but is not an installer (os-release ID=%q, %s): did kexec happen?", facts.OSID, facts.OSName)}
	}
	conn.SetEscalation(target.EscalateNone, false)
	return conn, facts, nil
}

func joinInts(ports []int) string {
	var s []string
	for _, p := range ports {
		s = append(s, strconv.Itoa(p))
	}
	return strings.Join(s, " or ")
}

// waitInstaller tries each port in turn until one answers as root with a
// key of keys, or the deadline passes (target.ReachHost); then it says
// what each port showed last.
func waitInstaller(ctx context.Context, before *target.Resolved, keys []ssh.PublicKey, ports []int, opts Options) (*target.Conn, error) {
	r := *before
	r.User = "root"
	r.SSHOptions = nil
	r.Signers = append(slices.Clone(opts.Signers), before.Signers...)
	retry := func(port int, err error) error {
		var mm *target.HostKeyMismatchError
		if errors.As(err, &mm) && port == ports[0] {
			return &Error{Step: "reconnect", Err: fmt.Errorf("the installer must present the host's own key, but: %w", err)}
		}
		// Another key on a fallback port is another server (say, a
		// forward to something else): keep waiting for ours.
		return nil
	}
	c, err := target.ReachHost(ctx, &r, opts.Home, target.Reach{What: "up as the installer", Ports: ports, Keys: keys, KeysFrom: "the host before kexec",
		Timeout: opts.UpTimeout, Interval: opts.Interval, Retry: retry})
	var we *target.WaitError
	if errors.As(err, &we) {
		return nil, &Error{Step: "reconnect", Err: err}
	}
	return c, err
}
