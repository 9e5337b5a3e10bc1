package kexec

import (
	"context"
	"fmt"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

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
	out, err := conn.Script(ctx, target.Script{Name: "make a work directory on the host", Body: script, AsLogin: true})
	if err != nil {
		return WorkDir{}, err
	}
	v := target.ParseValues(out)
	w := WorkDir{Path: v.Get("dir"), FSType: v.Get("fstype"), Free: -1}
	if kib, ok := v.Int("free"); ok {
		w.Free = kib * 1024
	}
	if w.Path == "" {
		return w, fmt.Errorf("make a work directory on the host: no directory in %q", out)
	}
	return w, nil
}

// RemoveWorkDir deletes the work directory (after a refusal or a failed
// upload, or an interrupt: it runs even when ctx is cancelled, within
// phase.CleanupTimeout). It leaves the staging directory of a failed
// upload, so that the next run resumes it (see Upload).
func RemoveWorkDir(ctx context.Context, conn *target.Conn, w WorkDir) error {
	cctx, cancel := phase.CleanupContext(ctx)
	defer cancel()
	return conn.RunAsLogin(cctx, "rm -rf "+target.ShellQuote(w.Path), nil, nil, nil)
}
