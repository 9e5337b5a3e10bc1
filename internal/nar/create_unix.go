//go:build unix

package nar

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// createFile creates path (which must not exist, and is never followed if a
// symlink) with mode, fills it from r and closes it. It uses the file
// descriptor directly: os.File would try to register every file with the
// network poller, which costs several system calls per file.
func createFile(path string, mode fs.FileMode, r io.Reader, buf []byte, fsync bool) (err error) {
	fd, err := openRetry(path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer func() {
		if cerr := syscall.Close(fd); cerr != nil && err == nil {
			err = &os.PathError{Op: "close", Path: path, Err: cerr}
		}
	}()
	for {
		n, rerr := r.Read(buf)
		for off := 0; off < n; {
			w, werr := syscall.Write(fd, buf[off:n])
			if werr == syscall.EINTR {
				continue
			}
			if werr != nil {
				return &os.PathError{Op: "write", Path: path, Err: werr}
			}
			off += w
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	// The umask may have narrowed the mode.
	if err := syscall.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return &os.PathError{Op: "chmod", Path: path, Err: err}
	}
	if fsync {
		if err := syscall.Fsync(fd); err != nil {
			return &os.PathError{Op: "fsync", Path: path, Err: err}
		}
	}
	return nil
}

func openRetry(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := syscall.Open(path, flags, mode)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}
