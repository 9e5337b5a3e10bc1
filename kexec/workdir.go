package kexec

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

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
// upload, or an interrupt: it runs even when ctx is cancelled, within
// phase.CleanupTimeout). It leaves the staging directory of a failed
// upload, so that the next run resumes it (see Upload).
func RemoveWorkDir(ctx context.Context, conn *target.Conn, w WorkDir) error {
	cctx, cancel := phase.CleanupContext(ctx)
	defer cancel()
	return conn.RunAsLogin(cctx, "rm -rf "+target.ShellQuote(w.Path), nil, nil, nil)
}
