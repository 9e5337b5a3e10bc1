package reboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// NotConfirmedError says the installed system provably did not come up as
// installed: nothing answered by the deadline (and no passphrase is
// awaited), it booted another system, or it did not reboot at all.
type NotConfirmedError struct{ Msg string }

func (e *NotConfirmedError) Error() string { return e.Msg }

// comeUp is one wait for the installed system after the reboot.
type comeUp struct {
	res       target.Resolved // the installer's, for address and credentials
	home      string
	boot      BootConfig
	loginUser string          // the run's login user
	keys      []ssh.PublicKey // with --copy-host-keys: the host's own set
	before    string          // the installer's boot id
	top       string          // the installed toplevel
	sink      event.Sink
	every     time.Duration // between attempts
	// identifyCmd prints the boot id and /run/current-system ("-" when
	// absent); "" is identifyDefault.
	identifyCmd string
	// strict: only a checked system will do (Confirm); what Run accepts
	// with a warning, unchecked, is a *NotConfirmedError.
	strict bool
}

const identifyDefault = "cat /proc/sys/kernel/random/boot_id; readlink /run/current-system || echo -"

// port is where the installed sshd listens, as this machine reaches it.
// A configuration on port 22 is reached where the installer was (which
// may be a forwarded port); another port is taken as it is.
func (w *comeUp) port() int {
	if !w.boot.Known || len(w.boot.Ports) == 0 || slices.Contains(w.boot.Ports, 22) {
		return w.res.Port
	}
	return w.boot.Ports[0]
}

// initrdPort is where the initrd's SSH answers, or 0.
func (w *comeUp) initrdPort() int {
	p := w.boot.InitrdSSHPort
	if p == 0 || len(w.boot.Passphrase) == 0 {
		return 0
	}
	if p == 22 {
		return w.res.Port
	}
	return p
}

// users are the logins to try on the installed system, in order: root when
// the configuration lets root in, the run's login user when the
// configuration has it (or is unknown), then its wheel users with keys.
func (w *comeUp) users() []string {
	var out []string
	add := func(u string) {
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	if !w.boot.Known || w.boot.RootLogin {
		add("root")
	}
	if w.loginUser != "root" && (!w.boot.Known || slices.Contains(w.boot.Users, w.loginUser)) {
		add(w.loginUser)
	}
	for _, u := range w.boot.Wheel {
		add(u)
	}
	return out
}

// wait waits for the installed system. It returns a connection to it when
// it logged in and saw the installed system; nil and a nil error when the
// system came up as far as can be seen but cannot be checked (warnings
// say why); a *NotConfirmedError when it provably did not come up.
func (w *comeUp) wait(ctx context.Context, timeout time.Duration) (*target.Conn, error) {
	if w.boot.Known && !w.boot.SSHD && w.strict {
		return nil, &NotConfirmedError{Msg: "the installed configuration runs no sshd: nothing to check"}
	}
	if w.boot.Known && !w.boot.SSHD {
		w.warn("the installed configuration runs no sshd (services.openssh.enable is false): nixos-via cannot check that it came up")
		return nil, nil
	}
	port, initrd := w.port(), w.initrdPort()
	users := w.users()
	at := w.res
	at.Port = port
	if len(w.boot.Passphrase) > 0 {
		how := "on the console"
		if initrd != 0 {
			how += fmt.Sprintf(" or over the initrd's SSH (ssh -p %d root@%s)", initrd, w.res.HostName)
		}
		report(w.sink, event.Info, "the installed system asks for the passphrase of LUKS %s at boot: type it %s",
			strings.Join(w.boot.Passphrase, ", "), how)
	}
	report(w.sink, event.Step, "waiting for the installed system on %s", at.Addr())
	var last error
	var seen ssh.PublicKey
	var refused []string
	sawInitrd := false
	attempt := func(ctx context.Context, at *target.Resolved) (*target.Conn, error) {
		if initrd != 0 && initrd != port && !sawInitrd {
			r := w.res
			r.Port = initrd
			if key, err := target.ProbeHostKey(ctx, &r); err == nil {
				sawInitrd = true
				report(w.sink, event.Info, "the initrd answers SSH on %s (key %s, not recorded as the system's): it waits for the LUKS passphrase",
					r.Addr(), ssh.FingerprintSHA256(key))
			}
		}
		key, err := target.ProbeHostKey(ctx, at)
		if err != nil {
			w.saw(&last, err)
			return nil, err
		}
		seen = key
		c, rf, done, err := w.login(ctx, *at, key, users)
		switch {
		case done && err != nil:
			return nil, stopWaiting{err}
		case done:
			return c, nil
		}
		// Whom any attempt saw refused stays refused: a later attempt
		// that the deadline cut before the login must not forget it.
		for _, u := range rf {
			if !slices.Contains(refused, u) {
				refused = append(refused, u)
			}
		}
		if err != nil {
			w.saw(&last, err)
			return nil, err
		}
		return nil, errNotYet
	}
	c, err := target.ReachHost(ctx, &at, w.home, target.Reach{What: "up", Timeout: timeout, Interval: w.every, Attempt: attempt, Retry: untilStopped})
	var we *target.WaitError
	if errors.As(err, &we) {
		return w.gaveUp(at, seen, refused, last, timeout, we.Attempts)
	}
	return c, err
}

// stopWaiting is an attempt's error that proves the system wrong: the
// wait ends with it.
type stopWaiting struct{ err error }

func (s stopWaiting) Error() string { return s.err.Error() }

// errNotYet is an attempt that logged in nowhere and learnt nothing new.
var errNotYet = errors.New("no login yet")

// untilStopped is the reboot wait's retry rule: wait out everything but a
// stopWaiting.
func untilStopped(_ int, err error) error {
	var s stopWaiting
	if errors.As(err, &s) {
		return s.err
	}
	return nil
}

// saw keeps err as what the wait saw last, unless it is an attempt cut by
// the deadline after a more telling one.
func (w *comeUp) saw(last *error, err error) {
	if !errors.Is(err, context.DeadlineExceeded) || *last == nil {
		*last = err
	}
}

// login tries each user on the host that presented key. done says the
// wait is over (with a connection, or with an error that proves the
// system wrong); otherwise refused lists whom the host refused and err
// is what to report if nothing better comes.
func (w *comeUp) login(ctx context.Context, at target.Resolved, key ssh.PublicKey, users []string) (c *target.Conn, refused []string, done bool, err error) {
	if len(w.keys) > 0 && !slices.ContainsFunc(w.keys, func(k ssh.PublicKey) bool { return string(k.Marshal()) == string(key.Marshal()) }) {
		if len(w.boot.Passphrase) > 0 && w.initrdPort() == w.port() {
			return nil, nil, false, fmt.Errorf("%s presents %s, not one of the host's keys: the initrd, waiting for the passphrase?", at.Addr(), ssh.FingerprintSHA256(key))
		}
		var want []string
		for _, k := range w.keys {
			want = append(want, ssh.FingerprintSHA256(k))
		}
		return nil, nil, true, &target.HostKeyMismatchError{Host: at.Addr(), Got: ssh.FingerprintSHA256(key), Want: want,
			Source: "the host's keys (--copy-host-keys)"}
	}
	for _, u := range users {
		r := at
		r.User = u
		// This exact key and nothing recorded yet: the key is recorded
		// only once the system is known to be the installed one (an
		// initrd asking for the passphrase has a key of its own).
		r.PinnedKeys, r.PinnedKey, r.PinSource = []ssh.PublicKey{key}, nil, "the key it presented a moment ago"
		r.HostKeyPin, r.HostKeyPins, r.ReplaceKnownHost = "", nil, false
		conn, err := target.DialResolved(ctx, &r, w.home)
		var ae *target.AuthError
		if errors.As(err, &ae) {
			refused = append(refused, u)
			continue
		}
		if err != nil {
			return nil, refused, false, err
		}
		what, err := w.identify(ctx, conn)
		var nc *NotConfirmedError
		switch {
		case errors.As(err, &nc):
			conn.Close()
			return nil, refused, true, err
		case err != nil:
			// The session broke or the deadline cut it (a system still
			// booting, a slow link): not proof of anything, try again.
			conn.Close()
			return nil, refused, false, err
		case what == "initrd":
			conn.Close()
			return nil, refused, false, fmt.Errorf("%s is the initrd (no /run/current-system yet), waiting for the passphrase", at.Addr())
		}
		if len(w.keys) == 0 {
			if err := target.RecordHostKey(&r, key); err != nil {
				conn.Close()
				return nil, refused, true, fmt.Errorf("record the installed system's host key: %w", err)
			}
		}
		report(w.sink, event.Info, "the installed system is up: /run/current-system = %s (logged in as %s, host key %s)", w.top, u, ssh.FingerprintSHA256(key))
		return conn, refused, true, nil
	}
	return nil, refused, false, nil
}

// identify tells the installed system from an initrd still waiting for a
// passphrase, and refuses anything else.
func (w *comeUp) identify(ctx context.Context, c *target.Conn) (string, error) {
	cmd := w.identifyCmd
	if cmd == "" {
		cmd = identifyDefault
	}
	var out bytes.Buffer
	err := c.RunAsLogin(ctx, cmd, nil, &out, nil)
	if err != nil {
		return "", fmt.Errorf("read the boot id and /run/current-system: %w", err)
	}
	f := strings.Fields(out.String())
	if len(f) != 2 {
		return "", fmt.Errorf("read the boot id and /run/current-system: got %q", out.String())
	}
	boot, current := f[0], f[1]
	switch {
	case boot == w.before:
		return "", &NotConfirmedError{Msg: fmt.Sprintf("the host answers with the installer's boot id (%s): it did not reboot", boot)}
	case current == "-" && len(w.boot.Passphrase) > 0:
		return "initrd", nil
	case current != w.top:
		return "", &NotConfirmedError{Msg: fmt.Sprintf("the host booted %s, not the installed system %s", current, w.top)}
	}
	return "system", nil
}

// gaveUp ends a wait that saw no installed system to log in to.
func (w *comeUp) gaveUp(at target.Resolved, seen ssh.PublicKey, refused []string, last error, timeout time.Duration, attempts int) (*target.Conn, error) {
	ambiguous := len(w.boot.Passphrase) > 0 && w.initrdPort() == w.port()
	if w.strict {
		return nil, &NotConfirmedError{Msg: fmt.Sprintf("no login on %s within %s showed the installed system %s (last: %s)",
			at.Addr(), timeout.Round(time.Second), w.top, target.Describe(last))}
	}
	if seen != nil && !ambiguous {
		// Up, with its own identity; only our login is refused.
		fp := ssh.FingerprintSHA256(seen)
		if len(w.keys) == 0 {
			if err := target.RecordHostKey(&at, seen); err != nil {
				return nil, fmt.Errorf("record the installed system's host key: %w", err)
			}
		}
		why := "no user to log in as"
		if len(refused) > 0 {
			why = "it refuses our login as " + strings.Join(refused, ", ")
		}
		if w.boot.Known && !w.boot.RootLogin {
			why += " (root may not log in: PermitRootLogin)"
		}
		w.warn(fmt.Sprintf("the installed system is up on %s with its new host key %s (recorded in known_hosts), but %s: not checked further", at.Addr(), fp, why))
		return nil, nil
	}
	if len(w.boot.Passphrase) > 0 {
		msg := fmt.Sprintf("the installed system did not answer on %s within %s: it waits for the passphrase of LUKS %s at boot, so it was not checked", at.Addr(), timeout.Round(time.Second), strings.Join(w.boot.Passphrase, ", "))
		if seen != nil {
			msg += fmt.Sprintf(" (something answers there with key %s, perhaps the initrd; not recorded)", ssh.FingerprintSHA256(seen))
		}
		w.warn(msg)
		return nil, nil
	}
	return nil, &NotConfirmedError{Msg: (&target.WaitError{What: "up", Addr: at.Addr(), Waited: timeout, Attempts: attempts,
		LastSeen: target.Describe(last), Last: last}).Error() + ": the installed system did not come up " +
		"(look at the host's console; the disks hold the installed system, and nixos-via --phases reboot checks it again)"}
}

func (w *comeUp) warn(msg string) {
	w.sink.Emit(event.Event{Phase: phase.Reboot, Kind: event.Warn, Msg: msg})
}
