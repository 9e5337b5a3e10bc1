package target

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// WaitError says a wait ran out of time, and what it saw last.
type WaitError struct {
	What     string        // "up" or "down"
	Addr     string        // where we looked
	Waited   time.Duration // how long
	Attempts int
	LastSeen string // refused, timed out, auth failed, other key, still answering ...
	Last     error
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("waiting for %s to come %s: gave up after %s and %d attempts; last seen: %s",
		e.Addr, e.What, e.Waited.Round(time.Second), e.Attempts, e.LastSeen)
}

func (e *WaitError) Unwrap() error { return e.Last }

// Describe says in a few words what an attempt to connect saw.
func Describe(err error) string {
	var (
		ce *ConnectError
		ae *AuthError
		mm *HostKeyMismatchError
		uk *UnknownHostKeyError
	)
	switch {
	case err == nil:
		return "answering SSH"
	case errors.As(err, &mm):
		return "another host key (" + mm.Got + ")"
	case errors.As(err, &uk):
		return "an unknown host key"
	case errors.As(err, &ae):
		return "SSH answers but authentication failed: " + ae.Err.Error()
	case errors.As(err, &ce):
		msg := ce.Err.Error()
		switch {
		case strings.Contains(msg, "connection refused"):
			return "connection refused (nothing listens on the port)"
		case strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "deadline exceeded"):
			return "silent (connect timed out)"
		case strings.Contains(msg, "no route to host"), strings.Contains(msg, "network is unreachable"):
			return "no route to host"
		}
		return msg
	}
	return err.Error()
}

// Reach says how to wait for a host to answer SSH: the first connection
// to a machine that may still be booting, the installer after kexec, the
// installed system after the reboot. Every such wait is one call of
// ReachHost.
type Reach struct {
	// What the host is waited for as, for the WaitError: "up", "up as the
	// installer".
	What string
	// Ports are tried in turn each round; nil is res.Port alone. With
	// Ports set, a timeout says what each port showed last.
	Ports []int
	// Keys, when set, are the only host keys accepted (replacing
	// known_hosts and --host-key pins); KeysFrom names them in a
	// mismatch ("the host before kexec").
	Keys     []ssh.PublicKey
	KeysFrom string
	// Timeout is the deadline of the whole wait; no attempt runs past it.
	Timeout time.Duration
	// Interval between rounds; 0 is 2 s.
	Interval time.Duration
	// Retry says whether an attempt's failure is worth waiting out: it
	// returns nil to go on, or the error the wait ends with. nil retries
	// every failure but a changed host key.
	Retry func(port int, err error) error
	// Attempt is one try at r, DialResolved when nil (the reboot wait
	// probes the key and tries several users instead).
	Attempt func(ctx context.Context, r *Resolved) (*Conn, error)
}

// ReachHost dials res (at each of w.Ports in turn) until one answers and
// authenticates, or w.Timeout passes; then it returns a *WaitError that
// says what it saw last. Each attempt's ConnectTimeout is cut to the time
// left. ctx ending stops it with ctx's error.
func ReachHost(ctx context.Context, res *Resolved, home string, w Reach) (*Conn, error) {
	start := time.Now()
	deadline := start.Add(w.Timeout)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ports := w.Ports
	if len(ports) == 0 {
		ports = []int{res.Port}
	}
	if w.Interval == 0 {
		w.Interval = 2 * time.Second
	}
	if w.Retry == nil {
		w.Retry = stopOnMismatch
	}
	if w.Attempt == nil {
		w.Attempt = func(ctx context.Context, r *Resolved) (*Conn, error) { return DialResolved(ctx, r, home) }
	}
	last := map[int]error{}
	attempts := 0
	for {
		for _, port := range ports {
			attempts++
			r := *res
			r.Port = port
			if len(w.Keys) > 0 {
				r.PinnedKeys, r.PinnedKey, r.PinSource = w.Keys, nil, w.KeysFrom
				r.HostKeyPin, r.HostKeyPins, r.ReplaceKnownHost = "", nil, false
			}
			r.ConnectTimeout = min(r.ConnectTimeout, max(time.Until(deadline), time.Second))
			c, err := w.Attempt(wctx, &r)
			if err == nil {
				return c, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if stop := w.Retry(port, err); stop != nil {
				return nil, stop
			}
			// An attempt cut by the deadline says less than the one before.
			if !errors.Is(err, context.DeadlineExceeded) || last[port] == nil {
				last[port] = err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wctx.Done():
			return nil, w.gaveUp(res, ports, last, time.Since(start), attempts)
		case <-time.After(w.Interval):
		}
	}
}

// gaveUp is the WaitError of a wait that ran out of time.
func (w Reach) gaveUp(res *Resolved, ports []int, last map[int]error, waited time.Duration, attempts int) error {
	e := &WaitError{What: w.What, Addr: res.Addr(), Waited: waited, Attempts: attempts, LastSeen: Describe(last[ports[0]]), Last: last[ports[0]]}
	if len(w.Ports) > 0 {
		var seen []string
		for _, p := range ports {
			seen = append(seen, fmt.Sprintf("port %d: %s", p, Describe(last[p])))
		}
		e.Addr, e.LastSeen = res.HostName, strings.Join(seen, "; ")
	}
	return e
}

// stopOnMismatch ends a wait at a changed host key and waits out the rest.
func stopOnMismatch(_ int, err error) error {
	var mm *HostKeyMismatchError
	if errors.As(err, &mm) {
		return err
	}
	return nil
}

// WaitUp dials res until it answers SSH and authenticates, for at most
// timeout, trying every interval. A changed host key stops it at once.
func WaitUp(ctx context.Context, res *Resolved, home string, timeout, interval time.Duration) (*Conn, error) {
	return ReachHost(ctx, res, home, Reach{What: "up", Timeout: timeout, Interval: interval})
}

// WaitDown waits until c's host stops answering: the connection's
// keepalive fails. It closes c. It gives up after timeout.
func (c *Conn) WaitDown(ctx context.Context, timeout, interval time.Duration) error {
	defer c.Close()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	attempts := 0
	for {
		attempts++
		errc := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			errc <- err
		}()
		select {
		case err := <-errc:
			if err != nil {
				return nil // the connection is gone
			}
		case <-time.After(interval + 5*time.Second):
			return nil // no answer to a keepalive: the host is gone
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return &WaitError{What: "down", Addr: c.res.Addr(), Waited: time.Since(start), Attempts: attempts, LastSeen: "still answering keepalives"}
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return &WaitError{What: "down", Addr: c.res.Addr(), Waited: time.Since(start), Attempts: attempts, LastSeen: "still answering keepalives"}
		}
	}
}
