//go:build linux

package install

import (
	"fmt"
	"os"
	"syscall"
)

// syncFS flushes the whole filesystem holding dir to disk (syncfs(2)), one
// call instead of an fsync per file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	defer f.Close()
	if _, _, errno := syscall.Syscall(sysSyncfs, f.Fd(), 0, 0); errno != 0 {
		return fmt.Errorf("syncfs %s: %w", dir, errno)
	}
	return nil
}

// perFileSync says whether restores must fsync every file themselves.
const perFileSync = false
