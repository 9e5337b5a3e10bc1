package deploy

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Phase names the deploy's events and errors.
const Phase = "deploy"

// The actions of switch-to-configuration.
const (
	ActionSwitch      = "switch"
	ActionBoot        = "boot"
	ActionTest        = "test"
	ActionDryActivate = "dry-activate"
)

// Defaults of the options.
const (
	DefaultConfirmTimeout    = 30 * time.Second
	DefaultActivationTimeout = 10 * time.Minute
)

var (
	//go:embed status.sh
	statusScript string
	//go:embed hold.sh
	holdScript string
	//go:embed prepare.sh
	prepareScript string
	//go:embed register.sh
	registerScript string
	//go:embed launch.sh
	launchScript string
	//go:embed supervisor.sh
	supervisorScript string
	//go:embed wait.sh
	waitScript string
	//go:embed confirm.sh
	confirmScript string
)

// Options shape one host's deploy.
type Options struct {
	Toplevel string         // the new system, built locally
	Closure  []nix.PathInfo // its closure
	Agent    string         // the local agent binary (install.AgentBinary)
	Jobs     int            // parallel streams for the copy
	// Action is switch-to-configuration's: switch ("" too), boot, test or
	// dry-activate.
	Action string
	// MagicRollback waits for the confirmation over a new connection and
	// rolls back without one (switch and test; boot and dry-activate
	// activate nothing to confirm, a failing switch still rolls back).
	MagicRollback bool
	// ConfirmTimeout is how long the host waits for the confirmation
	// after switch-to-configuration; 0 is DefaultConfirmTimeout.
	ConfirmTimeout time.Duration
	// ActivationTimeout is how long nixos-via waits for
	// switch-to-configuration; 0 is DefaultActivationTimeout.
	ActivationTimeout time.Duration
	// Checks run on the host (sh -c, as root) over the new connection
	// before it confirms; one failing rolls back.
	Checks []string
	// Home is the user's home for the new connection's ~/.ssh;
	// SudoPassword says the host's sudo asks for a password
	// (target.Facts.SudoPassword), which the new connection gives it.
	Home         string
	SudoPassword bool
	// Root prefixes every path on the host: "" (or "/") on a real host;
	// tests deploy into a directory.
	Root string
	// ID names this deploy on the host; "" is the time and the new
	// system's hash.
	ID string
}

// RolledBackError is a deploy that was undone: the host runs the previous
// generation again.
type RolledBackError struct {
	ID     string
	Reason string // the host's why: "no confirmation within 30s", "check failed: ..."
	// Seen is what nixos-via saw on its side when it had something to
	// add, such as why no new SSH connection came up; often empty, as
	// the host may roll back before nixos-via gives up.
	Seen string
}

func (e *RolledBackError) Error() string {
	if e.Seen != "" {
		return fmt.Sprintf("rolled back to the previous generation: %s (%s) (deploy %s)", e.Reason, e.Seen, e.ID)
	}
	return fmt.Sprintf("rolled back to the previous generation: %s (deploy %s)", e.Reason, e.ID)
}

// Error is a failed deploy. Changed says the host's profile or running
// system may have changed (magic rollback was off, or the rollback
// failed); false means the deploy stopped before anything changed.
type Error struct {
	Changed bool
	Err     error
}

func (e *Error) Error() string { return "deploy: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func unchanged(err error) error {
	var re *RolledBackError
	var de *Error
	if err == nil || errors.As(err, &re) || errors.As(err, &de) || errors.Is(err, context.Canceled) {
		return err
	}
	return &Error{Err: err}
}

// Check refuses options that cannot work (but the system, which is
// checked by Run), before anything is touched.
func (o Options) Check() error {
	switch o.Action {
	case "", ActionSwitch, ActionBoot, ActionTest, ActionDryActivate:
	default:
		return phase.Usagef("--action %q: want switch, boot, test or dry-activate", o.Action)
	}
	if o.ConfirmTimeout < 0 || (o.ConfirmTimeout > 0 && o.ConfirmTimeout < time.Second) {
		return phase.Usagef("--confirm-timeout %s: want at least 1s", o.ConfirmTimeout)
	}
	if len(o.Checks) > 0 && (!o.MagicRollback || !o.confirms()) {
		return phase.Usagef("--check runs before the confirmation: it needs magic rollback and --action switch or test")
	}
	for _, c := range o.Checks {
		if strings.TrimSpace(c) == "" {
			return phase.Usagef("--check: empty command")
		}
	}
	return nil
}

func (o Options) action() string {
	if o.Action == "" {
		return ActionSwitch
	}
	return o.Action
}

// confirms says whether the action activates something to confirm.
func (o Options) confirms() bool { a := o.action(); return a == ActionSwitch || a == ActionTest }

func (o Options) root() string {
	if o.Root == "/" {
		return ""
	}
	return strings.TrimSuffix(o.Root, "/")
}

// deployer is one Run.
type deployer struct {
	conn *target.Conn
	sink event.Sink
	o    Options
	id   string
	sent int64 // bytes the closure copy put on the wire
}

func (d *deployer) emit(kind event.Kind, format string, a ...any) {
	d.sink.Emit(event.Event{Phase: Phase, Kind: kind, Msg: fmt.Sprintf(format, a...)})
}

// Run deploys opts.Toplevel to the host behind conn (logged in, with its
// escalation set): see the package documentation for the steps. It
// returns nil once the host runs the new system (confirmed, with magic
// rollback), a *RolledBackError when the host put the previous one back,
// and an *Error otherwise.
func Run(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) error {
	_, err := RunSent(ctx, conn, sink, opts)
	return err
}

// RunSent is Run that also returns the bytes the closure copy put on the
// wire (0 when the host had every path), whatever the outcome.
func RunSent(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) (int64, error) {
	if sink == nil {
		sink = event.Discard{}
	}
	if err := opts.Check(); err != nil {
		return 0, err
	}
	if err := nix.CheckStorePath(opts.Toplevel); err != nil {
		return 0, phase.Usagef("deploy: toplevel: %v", err)
	}
	if opts.ConfirmTimeout == 0 {
		opts.ConfirmTimeout = DefaultConfirmTimeout
	}
	if opts.ActivationTimeout == 0 {
		opts.ActivationTimeout = DefaultActivationTimeout
	}
	d := &deployer{conn: conn, sink: sink, o: opts, id: opts.ID}
	if d.id == "" {
		d.id = time.Now().UTC().Format("20060102T150405Z") + "-" + hashPart(opts.Toplevel)
	}
	err := d.run(ctx)
	return d.sent, err
}

// hashPart is the hash of a store path (what is between /nix/store/ and
// the first "-"), 8 characters of it.
func hashPart(p string) string {
	h, _, _ := strings.Cut(path.Base(p), "-")
	return h[:min(8, len(h))]
}

func (d *deployer) run(ctx context.Context) error {
	st, err := d.status(ctx, d.conn)
	if err != nil {
		return unchanged(fmt.Errorf("read the host's state: %w", err))
	}
	resume, err := d.previous(ctx, st)
	if err != nil {
		return err
	}
	if resume != "" {
		d.id = resume
		d.emit(event.Info, "deploy %s of this system still waits for its confirmation: confirming it over a new connection", d.id)
		return d.confirm(ctx)
	}
	hold, err := d.lock(ctx)
	if err != nil {
		return unchanged(err)
	}
	defer hold.release()
	if err := d.copy(ctx, st, hold.gc); err != nil {
		return unchanged(err)
	}
	if err := d.launch(ctx, st); err != nil {
		return unchanged(err)
	}
	hold.release()
	return d.follow(ctx)
}

// hostStatus is what status.sh printed.
type hostStatus struct {
	nixStore, init, current string
	paths                   []string // the running system's closure
	flock                   bool
	last, lastTop, lastSt   string
	lastReported            bool
	lockID, lockAlive       string
}

func (d *deployer) status(ctx context.Context, c *target.Conn) (hostStatus, error) {
	out, err := c.Script(ctx, target.Script{Name: "deploy status", Body: statusScript, Args: []string{d.o.root()}})
	if err != nil {
		return hostStatus{}, err
	}
	var st hostStatus
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "nixstore":
			st.nixStore = v
		case "flock":
			st.flock = v == "yes"
		case "init":
			st.init = v
		case "current":
			if v != "none" {
				st.current = v
			}
		case "path":
			st.paths = append(st.paths, v)
		case "last":
			st.last = v
		case "lasttop":
			st.lastTop = v
		case "laststate":
			st.lastSt = v
		case "lastreported":
			st.lastReported = true
		case "lock":
			st.lockID, st.lockAlive, _ = strings.Cut(v, " ")
		}
	}
	if len(st.paths) == 0 && st.current != "" {
		// No Nix to list its closure: the system itself still shows
		// what changes.
		st.paths = []string{st.current}
	}
	if st.nixStore == "" {
		return st, fmt.Errorf("deploy status: no answer (got %q)", out)
	}
	return st, nil
}

// final says whether a state is one a deploy ends in.
func final(state string) bool {
	switch word(state) {
	case "deployed", "rolled-back", "rollback-failed", "failed", "dry-activated":
		return true
	}
	return false
}

func word(s string) string { w, _, _ := strings.Cut(s, " "); return w }

// previous reports a last deploy that ended unseen, and refuses while
// another one runs, unless it waits for this very system's confirmation:
// then it returns that deploy's ID, to confirm.
func (d *deployer) previous(ctx context.Context, st hostStatus) (string, error) {
	if st.last != "" && final(st.lastSt) && !st.lastReported {
		d.emit(event.Warn, "the previous deploy %s (%s) ended while no nixos-via was connected: %s", st.last, st.lastTop, st.lastSt)
		d.markReported(ctx, d.conn, st.last)
	}
	if st.lockAlive == "alive" || st.lockAlive == "unknown" {
		if st.lockID == st.last && word(st.lastSt) == "waiting" && st.lastTop == d.o.Toplevel && d.o.MagicRollback {
			return st.last, nil
		}
		return "", &Error{Err: fmt.Errorf("another deploy (%s) is running on the host: %s; wait for it to end (with magic rollback, at most its confirm timeout)", st.lockID, orUnknown(st.lastSt, st.lockID == st.last))}
	}
	return "", nil
}

func orUnknown(state string, known bool) string {
	if !known || state == "" {
		return "state unknown"
	}
	return state
}

func (d *deployer) markReported(ctx context.Context, c *target.Conn, id string) {
	dir := d.o.root() + "/var/lib/nixos-via/deploy/" + id
	c.Script(ctx, target.Script{Name: "mark reported", Body: `touch "$1/reported"`, Args: []string{dir}})
}

// holder is the session that holds the deploy lock and the GC lock.
type holder struct {
	stdin *io.PipeWriter
	done  chan error
	gc    bool
	once  sync.Once
}

// release ends the session: the locks go (the deploy lock only if the
// supervisor has not taken it over).
func (h *holder) release() {
	h.once.Do(func() {
		h.stdin.Close()
		<-h.done
	})
}

func (d *deployer) lock(ctx context.Context) (*holder, error) {
	d.emit(event.Step, "taking the deploy lock")
	pr, pw := io.Pipe()
	h := &holder{stdin: pw, done: make(chan error, 1)}
	locked := make(chan string, 1)
	go func() {
		_, err := d.conn.Script(ctx, target.Script{Name: "deploy lock", Body: holdScript, Args: []string{d.o.root(), d.id}, Input: pr,
			OnLine: func(line string) {
				switch {
				case strings.HasPrefix(line, "locked "), strings.HasPrefix(line, "busy "):
					select {
					case locked <- line:
					default:
					}
				case line != "":
					d.emit(event.Info, "%s", line)
				}
			}})
		pr.Close()
		if err == nil {
			err = errors.New("deploy lock: the session ended")
		}
		select {
		case locked <- "":
		default:
		}
		h.done <- err
	}()
	select {
	case line := <-locked:
		switch {
		case strings.HasPrefix(line, "locked "):
			h.gc = line == "locked gc=yes"
			return h, nil
		case strings.HasPrefix(line, "busy "):
			pw.Close()
			<-h.done
			f := strings.Fields(line)
			return nil, fmt.Errorf("another deploy (%s) holds the lock on the host", f[1])
		}
		pw.Close()
		return nil, <-h.done
	case <-ctx.Done():
		pw.Close()
		<-h.done
		return nil, ctx.Err()
	}
}

// copy sends what the host lacks and registers it, under the locks.
func (d *deployer) copy(ctx context.Context, st hostStatus, gcLocked bool) error {
	var list strings.Builder
	for _, info := range d.o.Closure {
		list.WriteString(info.Path + "\n")
	}
	out, err := d.conn.Script(ctx, target.Script{Name: "deploy plan", Body: prepareScript, Args: []string{d.o.root(), st.nixStore}, Input: strings.NewReader(list.String())})
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "missing "); ok {
			want[p] = true
		}
	}
	var missing []nix.PathInfo
	var bytes uint64
	for _, info := range d.o.Closure {
		if want[info.Path] {
			missing = append(missing, info)
			bytes += info.NarSize
		}
	}
	d.plan(st, missing, bytes)
	if st.nixStore != "none" && !gcLocked {
		d.emit(event.Warn, "the host has no flock: a garbage collection started during the copy could remove paths before they are registered")
	}
	if len(missing) > 0 {
		if err := install.UploadAgent(ctx, d.conn, d.sink, d.o.Agent, install.AgentPath); err != nil {
			return err
		}
		root := d.o.root()
		if root == "" {
			root = "/"
		}
		d.emit(event.Step, "copying %d paths into the host's /nix/store", len(missing))
		start := time.Now()
		stats, err := closure.Send(ctx, d.conn, missing, closure.SendOptions{Agent: install.AgentPath, Root: root, Jobs: d.o.Jobs, Sink: phaseSink{d.sink}})
		d.sent += int64(stats.WireBytes)
		if err != nil {
			return fmt.Errorf("copy the closure: %w", err)
		}
		d.emit(event.Info, "%d paths sent (%s of NAR, %s on the wire) in %s", stats.Sent, event.Bytes(int64(stats.NarBytes)), event.Bytes(int64(stats.WireBytes)), time.Since(start).Round(100*time.Millisecond))
	}
	reg, err := nix.Registration(missing)
	if err != nil {
		return err
	}
	d.emit(event.Step, "registering %d paths with the host's Nix", len(missing))
	_, err = d.conn.Script(ctx, target.Script{Name: "register", Body: registerScript, Args: []string{d.o.root(), st.nixStore, d.o.Toplevel}, Input: strings.NewReader(reg)})
	return err
}

// phaseSink gives the copy's events the deploy phase.
type phaseSink struct{ s event.Sink }

func (p phaseSink) Emit(e event.Event) {
	if e.Phase == "" || e.Phase == phase.Install {
		e.Phase = Phase
	}
	p.s.Emit(e)
}

// plan prints what the deploy sends and changes.
func (d *deployer) plan(st hostStatus, missing []nix.PathInfo, bytes uint64) {
	d.sink.Emit(event.Event{Phase: Phase, Kind: event.Info,
		Msg:  fmt.Sprintf("plan: %d of %d paths to send (%s of NAR), then switch-to-configuration %s", len(missing), len(d.o.Closure), event.Bytes(int64(bytes)), d.o.action()),
		Data: map[string]string{"paths": strconv.Itoa(len(missing)), "bytes": strconv.FormatUint(bytes, 10)}})
	if st.current == "" {
		d.emit(event.Info, "plan: the host runs no system nixos-via can read (no /run/current-system)")
		return
	}
	if st.current == d.o.Toplevel {
		d.emit(event.Info, "plan: the host already runs this system")
		return
	}
	var newPaths []string
	for _, info := range d.o.Closure {
		newPaths = append(newPaths, info.Path)
	}
	changes := Diff(st.paths, newPaths)
	if len(changes) == 0 {
		d.emit(event.Info, "plan: no package changes its version")
	}
	for _, c := range changes {
		d.emit(event.Info, "plan: %s", c)
	}
}

// launch starts the supervisor.
func (d *deployer) launch(ctx context.Context, st hostStatus) error {
	magic := "0"
	if d.o.MagicRollback {
		magic = "1"
	}
	secs := strconv.Itoa(int((d.o.ConfirmTimeout + time.Second - 1) / time.Second))
	d.emit(event.Step, "switch-to-configuration %s under a supervisor on the host (deploy %s)", d.o.action(), d.id)
	_, err := d.conn.Script(ctx, target.Script{Name: "start the supervisor", Body: launchScript,
		Args:  []string{d.o.root(), d.id, d.o.Toplevel, d.o.action(), magic, secs, st.init},
		Input: strings.NewReader(supervisorScript),
		OnLine: func(line string) {
			if line != "" {
				d.emit(event.Info, "%s", line)
			}
		}})
	return err
}

// waited is what wait.sh saw.
type waited struct {
	state   string
	logSize int
}

// wait waits (over c) until the deploy leaves the states of mode, passing
// its log on from byte from.
func (d *deployer) wait(ctx context.Context, c *target.Conn, mode string, timeout time.Duration, from int) (waited, error) {
	var w waited
	secs := strconv.Itoa(int(timeout/time.Second) + 1)
	_, err := c.Script(ctx, target.Script{Name: "wait for the supervisor", Body: waitScript,
		Args: []string{d.o.root(), d.id, secs, mode, strconv.Itoa(from)},
		OnLine: func(line string) {
			switch {
			case strings.HasPrefix(line, "@@state "):
				w.state = strings.TrimPrefix(line, "@@state ")
			case strings.HasPrefix(line, "@@logsize "):
				w.logSize, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "@@logsize ")))
			case line != "" && !strings.HasPrefix(line, "nixos-via deploy: "):
				d.emit(event.Info, "host: %s", line)
			}
		}})
	if w.logSize < from {
		w.logSize = from
	}
	return w, err
}

// follow waits for the switch over the old connection, then confirms.
func (d *deployer) follow(ctx context.Context) error {
	w, err := d.wait(ctx, d.conn, "active", d.o.ActivationTimeout, 0)
	if err != nil {
		// The switch may have taken the old connection down (a restarted
		// network or sshd): the outcome is read over a new one.
		d.emit(event.Warn, "the connection broke during the switch (%v); going on over a new connection", err)
		if d.o.MagicRollback && d.o.confirms() {
			return d.confirmFrom(ctx, w.logSize)
		}
		return d.outcomeFresh(ctx, w.logSize, "")
	}
	switch {
	case word(w.state) == "waiting":
		return d.confirmFrom(ctx, w.logSize)
	case final(w.state):
		return d.result(ctx, d.conn, w.state)
	}
	return &Error{Changed: true, Err: fmt.Errorf("switch-to-configuration %s did not finish within %s; the host's deploy %s is at %q", d.o.action(), d.o.ActivationTimeout, d.id, w.state)}
}

func (d *deployer) confirm(ctx context.Context) error { return d.confirmFrom(ctx, 0) }

// fresh opens a brand-new connection to the host (new TCP, handshake and
// authentication), within timeout.
func (d *deployer) fresh(ctx context.Context, what string, timeout time.Duration) (*target.Conn, error) {
	c, err := target.ReachHost(ctx, d.conn.Resolved(), d.o.Home, target.Reach{What: what, Timeout: timeout, Interval: time.Second})
	if err != nil {
		return nil, err
	}
	c.SetEscalation(d.conn.Escalation(), d.o.SudoPassword)
	return c, nil
}

// confirmFrom confirms the deploy over a new connection (checks first),
// then reads how it ended.
func (d *deployer) confirmFrom(ctx context.Context, from int) error {
	d.emit(event.Step, "confirming over a new SSH connection (the host rolls back without it within %s)", d.o.ConfirmTimeout)
	c, err := d.fresh(ctx, "up after the switch", d.o.ConfirmTimeout)
	if err != nil {
		d.emit(event.Warn, "no new SSH connection to the host: %v", target.Describe(err))
		return d.outcomeFresh(ctx, from, fmt.Sprintf("no new SSH connection: %s", target.Describe(err)))
	}
	defer c.Close()
	// After a broken connection (or on a re-run) the switch may still run.
	w, err := d.wait(ctx, c, "active", d.o.ActivationTimeout, from)
	if err != nil {
		return d.outcomeFresh(ctx, from, "")
	}
	from = w.logSize
	if final(w.state) {
		return d.result(ctx, c, w.state)
	}
	args := append([]string{d.o.root(), d.id}, d.o.Checks...)
	_, err = c.Script(ctx, target.Script{Name: "confirm", Body: confirmScript, Args: args, OnLine: func(line string) {
		switch {
		case strings.HasPrefix(line, "check"):
			d.emit(event.Info, "%s", line)
		case strings.HasPrefix(line, "decided "):
			d.emit(event.Info, "%s", strings.TrimPrefix(line, "decided "))
		}
	}})
	if err != nil {
		d.emit(event.Warn, "the confirmation failed: %v", err)
	}
	w, err = d.wait(ctx, c, "final", d.o.ConfirmTimeout+d.o.ActivationTimeout, from)
	if err != nil || !final(w.state) {
		return d.outcomeFresh(ctx, w.logSize, "")
	}
	return d.result(ctx, c, w.state)
}

// outcomeFresh reads the deploy's end over a new connection: after a
// failed confirmation the host rolls back on its own, so the old
// generation answers again.
func (d *deployer) outcomeFresh(ctx context.Context, from int, why string) error {
	timeout := d.o.ConfirmTimeout + d.o.ActivationTimeout
	c, err := d.fresh(ctx, "up after the rollback", timeout)
	if err != nil {
		return &Error{Changed: true, Err: fmt.Errorf("the host did not answer a new SSH connection within %s after deploy %s: %w", timeout, d.id, err)}
	}
	defer c.Close()
	w, err := d.wait(ctx, c, "final", timeout, from)
	if err != nil {
		return &Error{Changed: true, Err: fmt.Errorf("read the outcome of deploy %s: %w", d.id, err)}
	}
	if !final(w.state) {
		return &Error{Changed: true, Err: fmt.Errorf("deploy %s did not end within %s; it is at %q", d.id, timeout, w.state)}
	}
	err = d.result(ctx, c, w.state)
	var rb *RolledBackError
	if errors.As(err, &rb) {
		rb.Seen = why
	}
	return err
}

// result is the error (or nil) of a final state, seen over c.
func (d *deployer) result(ctx context.Context, c *target.Conn, state string) error {
	d.markReported(ctx, c, d.id)
	rest := strings.TrimSpace(strings.TrimPrefix(state, word(state)))
	switch word(state) {
	case "deployed", "dry-activated":
		d.sink.Emit(event.Event{Phase: Phase, Kind: event.Done, Msg: fmt.Sprintf("%s: %s (deploy %s)", state, d.o.Toplevel, d.id), Data: map[string]string{"deploy": d.id, "state": state}})
		return nil
	case "rolled-back":
		return &RolledBackError{ID: d.id, Reason: rest}
	case "rollback-failed":
		return &Error{Changed: true, Err: fmt.Errorf("the rollback failed after %s; the host's log is %s/var/lib/nixos-via/deploy/%s/log", rest, d.o.root(), d.id)}
	}
	// failed: the switch failed and nothing was restored.
	if d.o.action() == ActionDryActivate {
		return &Error{Err: errors.New(rest)}
	}
	return &Error{Changed: true, Err: fmt.Errorf("%s (magic rollback is off: nothing was restored)", rest)}
}
