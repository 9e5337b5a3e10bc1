package kexec

import (
	"bytes"
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

// Marker is the line an installer's run script prints once the new kernel
// is loaded and `kexec -e` is scheduled.
const Marker = "machine will boot into nixos"

// Options shape the phase.
type Options struct {
	ExtraFlags string // --kexec-extra-flags, passed to run
	// PostKexecPort is the installer's SSH port; 0 tries the port used
	// before kexec and 22, whichever answers with the same host key.
	PostKexecPort int
	// DownTimeout bounds the wait for the host to go away after run;
	// UpTimeout the wait for the installer to answer.
	DownTimeout, UpTimeout time.Duration
	// Interval between connection attempts (default 2 s).
	Interval time.Duration
	Home     string // for ~/.ssh (known_hosts of the reconnect)
	// Signers are in-memory keys the installer trusts (the run's
	// AccessKey), offered first after kexec and kept in the new
	// connection's Resolved for every later dial.
	Signers []ssh.Signer
	Events  event.Sink
}

// Error is a failure of the kexec step itself, with what the host printed.
type Error struct {
	Step   string // "upload", "run", "reconnect", "verify"
	Err    error
	Output string // run's output, the last dmesg lines
}

func (e *Error) Error() string {
	s := fmt.Sprintf("kexec %s: %v", e.Step, e.Err)
	if out := strings.TrimSpace(e.Output); out != "" {
		s += "\n--- output of the host ---\n" + out
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// WorkDir is where the tarball's files go on the host.
type WorkDir struct {
	Path   string
	Free   int64 // bytes free; -1 unknown
	FSType string
}

// InRAM says the directory is on a RAM-backed filesystem.
func (w WorkDir) InRAM() bool {
	return w.FSType == "tmpfs" || w.FSType == "ramfs" || w.FSType == "rootfs"
}

// PrepareWorkDir makes a fresh directory in the login user's home (on disk,
// so the files do not use RAM) and measures where it is.
func PrepareWorkDir(ctx context.Context, conn *target.Conn) (WorkDir, error) {
	const script = `set -e
d=$(mktemp -d "${HOME:-/tmp}/.nixos-via-kexec.XXXXXX" 2>/dev/null || mktemp -d /tmp/.nixos-via-kexec.XXXXXX)
echo "dir=$d"
df -Pk "$d" | awk 'NR==2{print "free=" $4}'
awk -v d="$d" '{ m=$2; if (m=="/") m=""; if (index(d "/", m "/")==1 && length(m)>=l) { l=length(m); t=$3 } } END { print "fstype=" t }' /proc/mounts
`
	var out, errb bytes.Buffer
	if err := conn.RunAsLogin(ctx, "sh -s", strings.NewReader(script), &out, &errb); err != nil {
		return WorkDir{}, fmt.Errorf("make a work directory on the host: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	w := WorkDir{Free: -1}
	for _, line := range strings.Split(out.String(), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "dir":
			w.Path = v
		case "free":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				w.Free = n * 1024
			}
		case "fstype":
			w.FSType = v
		}
	}
	if w.Path == "" {
		return w, fmt.Errorf("make a work directory on the host: no directory in %q", out.String())
	}
	return w, nil
}

// RemoveWorkDir deletes the work directory (after a refusal or a failed
// upload). It leaves the staging directory of a failed upload, so that the
// next run resumes it (see Upload).
func RemoveWorkDir(ctx context.Context, conn *target.Conn, w WorkDir) error {
	return conn.RunAsLogin(ctx, "rm -rf "+target.ShellQuote(w.Path), nil, nil, nil)
}

// RunScript runs kexec/run as root and checks that it printed Marker. When
// run fails, the installer's files are removed from the work directory (they
// may take hundreds of MiB, in RAM on a rescue system) and run.log, with
// run's output, stays there for a look.
func RunScript(ctx context.Context, conn *target.Conn, w WorkDir, extraFlags string) (string, error) {
	w2 := target.ShellQuote(w.Path)
	// run's output is kept in run.log on the host too; "| tee" would hide
	// run's exit status from sh, so it goes through a status file.
	cmd := fmt.Sprintf("cd %s && { TMPDIR=%s ./kexec/run --kexec-extra-flags %s 2>&1; echo $? > .status; } | tee run.log; exit $(cat .status)",
		w2, w2, target.ShellQuote(extraFlags))
	var out bytes.Buffer
	err := conn.Run(ctx, cmd, nil, &out, &out)
	output := out.String()
	var ee *target.ExitError
	// The marker says the new kernel is loaded. A connection lost after it
	// is the host going down early, not a failure (nixos-anywhere, too,
	// only looks for the marker).
	if strings.Contains(output, Marker) && (err == nil || errors.As(err, &ee) && ee.Lost) {
		return output, nil
	}
	switch {
	case errors.As(err, &ee) && ee.Signal != "":
		err = fmt.Errorf("kexec/run was killed by signal %s", ee.Signal)
	case errors.As(err, &ee) && ee.Status >= 0:
		err = fmt.Errorf("kexec/run: exit %d", ee.Status)
	case err != nil:
		err = fmt.Errorf("kexec/run: %w", err)
	default:
		err = fmt.Errorf("kexec/run finished without printing %q, so the new kernel is not loaded", Marker)
	}
	output += dmesgTail(ctx, conn)
	if rmErr := conn.RunAsLogin(ctx, fmt.Sprintf("rm -rf %s/kexec %s/.status", w2, w2), nil, nil, nil); rmErr == nil {
		err = fmt.Errorf("%w (its output is in %s/run.log on the host; the installer's files there are removed)", err, w.Path)
	}
	return output, &Error{Step: "run", Err: err, Output: output}
}

func dmesgTail(ctx context.Context, conn *target.Conn) string {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := conn.Output(dctx, "dmesg 2>/dev/null | tail -n 15", nil)
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return ""
	}
	return "\n--- last kernel messages ---\n" + string(out)
}

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
