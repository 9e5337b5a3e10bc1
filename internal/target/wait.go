package target

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
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

// WaitUp dials res until it answers SSH and authenticates, for at most
// timeout, trying every interval. A changed host key stops it at once.
func WaitUp(ctx context.Context, res *Resolved, home string, timeout, interval time.Duration) (*Conn, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	attempts := 0
	var last error
	for {
		attempts++
		r := *res
		if rem := time.Until(start.Add(timeout)); rem < r.ConnectTimeout {
			r.ConnectTimeout = max(rem, time.Second)
		}
		c, err := DialResolved(wctx, &r, home)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var mm *HostKeyMismatchError
		if errors.As(err, &mm) {
			return nil, err
		}
		if !errors.Is(err, context.DeadlineExceeded) || last == nil {
			last = err
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &WaitError{What: "up", Addr: res.Addr(), Waited: time.Since(start), Attempts: attempts, LastSeen: Describe(last), Last: last}
		case <-time.After(interval):
		}
	}
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
