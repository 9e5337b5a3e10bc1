//go:build linux

package closure

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func pipeSize(t *testing.T, f *os.File) int {
	t.Helper()
	n, err := unix.FcntlInt(f.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatalf("F_GETPIPE_SZ: %v", err)
	}
	return n
}

// TestGrowPipe: the agent's stdin pipe grows to hold stdinPipeSize; other
// readers are left alone.
func TestGrowPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	before := pipeSize(t, r)
	growPipe(r, stdinPipeSize)
	if got := pipeSize(t, r); got < stdinPipeSize {
		// An unprivileged process may not go beyond /proc/sys/fs/pipe-max-size.
		data, _ := os.ReadFile("/proc/sys/fs/pipe-max-size")
		if max, _ := strconv.Atoi(strings.TrimSpace(string(data))); os.Geteuid() == 0 || max >= stdinPipeSize {
			t.Errorf("pipe holds %d bytes after growPipe, want %d (was %d)", got, stdinPipeSize, before)
		}
	}
	f, err := os.CreateTemp(t.TempDir(), "not-a-pipe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	growPipe(f, stdinPipeSize)             // a regular file: nothing happens, no panic
	growPipe(strings.NewReader(""), 1<<20) // not a file at all
}
