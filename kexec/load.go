package kexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Marker is the line an installer's run script prints once the new kernel
// is loaded and `kexec -e` is scheduled.
const Marker = "machine will boot into nixos"

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
	cctx, cancel := phase.CleanupContext(ctx)
	defer cancel()
	output += dmesgTail(cctx, conn)
	if rmErr := conn.RunAsLogin(cctx, fmt.Sprintf("rm -rf %s/kexec %s/.status", w2, w2), nil, nil, nil); rmErr == nil {
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
