//go:build linux

package closure

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// growPipe makes the pipe r reads from, when it is one, hold size bytes
// instead of the default 64 KiB, so that the writer (sshd) hands over more
// per write and both wake up less. Failures are ignored: the pipe works as
// it is, only with more wake-ups.
func growPipe(r io.Reader, size int) {
	f, ok := r.(*os.File)
	if !ok {
		return
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, size)
}
