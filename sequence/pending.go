package sequence

import (
	"context"
	"path/filepath"
	"time"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/kexec"
	"github.com/nixos-via/nixos-via/reboot"
)

// notesDir is where the reboot phase keeps its pending-reboot notes:
// next to the kexec tarball cache ($XDG_CACHE_HOME/nixos-via/reboots, or
// else HOME/.cache/nixos-via/reboots); "" (no cache, no home) keeps none.
func (p *Plan) notesDir() string {
	cache := p.Kexec.CacheDir
	if cache == "" {
		if p.Home == "" {
			return ""
		}
		cache = kexec.UserCacheDir("", p.Home)
	}
	return filepath.Join(filepath.Dir(cache), "reboots")
}

// confirmPending is the recovery of a run stopped while it rebooted the
// host: the first connection failed with err and, when err is the host
// key (the installed system has a new one) and a pending-reboot note of
// this host for the system built now says an earlier run rebooted it
// into that system, the reboot phase's check runs now, as it would have
// then. It says whether the installed system is confirmed (its key is
// then recorded and the note is gone; the connection that checked it is closed).
func (r *run) confirmPending(ctx context.Context, err error) bool {
	dir := r.p.notesDir()
	if !isHostKeyError(err) || dir == "" || r.toplevel == "" || r.p.Reinstall {
		return false
	}
	res, rerr := r.p.Target.Resolve(r.p.Home)
	if rerr != nil {
		return false
	}
	note, nerr := reboot.ReadPending(dir, res.Addr())
	if nerr != nil {
		r.warn(nerr.Error())
		return false
	}
	if note == nil {
		return false
	}
	if ok, why := note.Matches(res.Addr(), r.toplevel, time.Now()); !ok {
		r.info(phase.Reboot, "a note says an earlier run rebooted %s, but %s: not used", res.Addr(), why)
		return false
	}
	r.info(phase.Reboot, "an earlier run was stopped while it rebooted %s into this system (at %s): checking that the installed system came up",
		res.Addr(), note.Time.Local().Format(time.DateTime))
	timeout := r.p.ConnectTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	conn, cerr := reboot.Confirm(ctx, *res, r.sink, reboot.Options{CopyHostKeys: r.p.CopyHostKeys, Timeout: timeout,
		Home: r.p.Home, Boot: r.boot, LoginUser: res.User}, note)
	if cerr != nil {
		r.info(phase.Reboot, "not confirmed: %v", cerr)
		return false
	}
	conn.Close()
	if rerr := reboot.RemovePending(dir, note.Addr); rerr != nil {
		r.warn(rerr.Error())
	}
	return true
}
