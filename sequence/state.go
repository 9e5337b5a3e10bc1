package sequence

import (
	"errors"
	"fmt"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// HostState is how far a run got with the host: what a failure or an
// interrupt leaves behind.
type HostState int

const (
	Untouched    HostState = iota // nothing on the host changed yet
	Staged                        // only a cut upload's files were left (Stopped.Left)
	Kexecing                      // the installer's kexec was started
	Installer                     // the installer runs in RAM; the disks are untouched
	Partitioning                  // disko was erasing, partitioning and formatting
	DisksReady                    // the disks are partitioned, formatted and mounted at /mnt
	Installing                    // the closure partly copied, or the bootloader not yet installed
	Installed                     // installed, not yet rebooted
	Rebooted                      // rebooted into the new system
	// KeyDiffers: the first connection failed on the host key (another
	// key than known_hosts has, or none known with strict checking).
	// This run changed nothing, but what the host runs is not known: it
	// may have been reinstalled (by an earlier run stopped while it
	// rebooted, say) or be another machine.
	KeyDiffers
)

// String says what the host is now, as the failure message reads it.
func (s HostState) String() string {
	switch s {
	case Untouched:
		return "nothing on the host was changed: it still runs its original system"
	case Staged:
		return "the host still runs its original system, which is unchanged but for the partly uploaded installer files nixos-via left for the same command to resume"
	case Kexecing:
		return "the installer's kexec was started: the host is booting the installer in RAM (or still runs its original system, if the kexec did not take); its disks are untouched"
	case Installer:
		return "the host runs the installer in RAM; its disks are untouched"
	case Partitioning:
		return "the host runs the installer in RAM; its disks were being erased, partitioned and formatted and may be half done"
	case DisksReady:
		return "the host runs the installer in RAM; its disks are partitioned, formatted and mounted at /mnt"
	case Installing:
		return "the host runs the installer in RAM with the new system partly copied into /mnt (every path that arrived is complete and checked)"
	case Installed:
		return "the new system is installed in /mnt with its bootloader; the host still runs the installer and was not rebooted"
	case Rebooted:
		return "the new system is installed and the host was told to reboot into it"
	case KeyDiffers:
		return "nixos-via changed nothing on it in this run, but what it runs is not known: it presented another host key than known_hosts has " +
			"(it was reinstalled, perhaps by an earlier nixos-via run stopped while it rebooted, or it is another machine)"
	}
	return fmt.Sprintf("state %d", int(s))
}

// Stopped is a failed or interrupted Run: the error, where it left the
// host and how to go on. Error is the cause's message alone; the CLI
// prints State and Next after it.
type Stopped struct {
	Err   error
	State HostState
	// Rerun says the same command, run again, goes on where this one
	// stopped (the installer is found, an applied layout is not erased
	// again, the copy resumes). Login and Port, when set, are the
	// installer's: the re-run must reach it there.
	Rerun bool
	Login string
	Port  int
	// Advice is what to do instead when a re-run would not go on.
	Advice string
	// Left are the directories the run left on the host (a cut upload's).
	Left []string
	// Host is the destination the run was given (Plan.Host), for Hint.
	Host string
}

// isHostKeyError says err is a host key that does not match, or is not
// known with strict checking.
func isHostKeyError(err error) bool {
	var (
		mm *target.HostKeyMismatchError
		uk *target.UnknownHostKeyError
	)
	return errors.As(err, &mm) || errors.As(err, &uk)
}

func (s *Stopped) Error() string { return s.Err.Error() }
func (s *Stopped) Unwrap() error { return s.Err }

// stopped wraps err with where r left the host. A usage error or a
// refusal before the host was changed stays as it is: it says itself
// that nothing was touched, and running it again would fail again.
func (r *run) stopped(err error) error {
	if err == nil {
		return nil
	}
	var (
		ue *phase.UsageError
		rf *phase.Refusal
	)
	if r.state == Untouched && (errors.As(err, &ue) || errors.As(err, &rf)) {
		return err
	}
	s := &Stopped{Err: err, State: r.state, Left: r.left, Host: r.p.Host}
	if s.State == Untouched && len(r.left) > 0 {
		s.State = Staged
	}
	if s.State == Untouched && isHostKeyError(err) {
		s.State = KeyDiffers
	}
	switch s.State {
	case Untouched, KeyDiffers, Staged, Kexecing, Installer, Partitioning, DisksReady, Installing, Installed:
		// Untouched here is a failure that is no refusal (a lost
		// connection, a cut upload): the same command goes on from there.
		s.Rerun = true
	case Rebooted:
		s.Advice = "wait and log in to check it, or run the same command again: it checks the host as the reboot phase does " +
			"and leaves a host that runs the installed system alone (exit 0, nothing erased); if the host does not come up, look at its console"
	}
	if r.state >= Installer && r.state < Rebooted && r.conn != nil {
		res := r.conn.Resolved()
		if res.User != r.loginUser {
			s.Login = res.User
		}
		if r.p.Kexec.PostKexecPort != 0 && res.Port != r.firstPort {
			s.Port = res.Port
		}
	}
	return s
}
