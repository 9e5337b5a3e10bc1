//go:build !linux

package closure

import (
	"fmt"
	"os"
)

// syncFS fsyncs dir itself; file data was synced file by file (perFileSync).
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

const perFileSync = true
