package install

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

const (
	tmpPrefix = ".nixos-via-tmp-"
	// ValidDir is where, under the target root, the receiver records each
	// completely received path (one registration record per path).
	ValidDir = "nix/var/nixos-via/valid"
)

// layout names the receiver's files under a target root.
type layout struct{ root string }

func newLayout(root string) (layout, error) {
	if root == "" || !filepath.IsAbs(root) {
		return layout{}, fmt.Errorf("target root %q: want an absolute path", root)
	}
	return layout{root: filepath.Clean(root)}, nil
}

func (l layout) storeDir() string { return filepath.Join(l.root, nix.StoreDir) }
func (l layout) validDir() string { return filepath.Join(l.root, ValidDir) }

func (l layout) final(storePath string) string { return filepath.Join(l.root, storePath) }

func (l layout) record(storePath string) string {
	return filepath.Join(l.validDir(), filepath.Base(storePath))
}

func (l layout) temp(storePath string) (string, error) {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return filepath.Join(l.storeDir(), tmpPrefix+filepath.Base(storePath)+"-"+hex.EncodeToString(r[:])), nil
}

func (l layout) mkdirs() error {
	for _, d := range []string{l.storeDir(), l.validDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// validRecord reads the record of storePath; ok is false when the path or its
// record is missing, or the record is unreadable or names another path.
func (l layout) validRecord(storePath string) (nix.PathInfo, bool) {
	if _, err := os.Lstat(l.final(storePath)); err != nil {
		return nix.PathInfo{}, false
	}
	data, err := os.ReadFile(l.record(storePath))
	if err != nil {
		return nix.PathInfo{}, false
	}
	infos, err := nix.ParseRegistration(bytes.NewReader(data))
	if err != nil || len(infos) != 1 || infos[0].Path != storePath {
		return nix.PathInfo{}, false
	}
	return infos[0], true
}

// removeStaleTemps removes temporaries a killed receiver left in the store.
func (l layout) removeStaleTemps() error {
	var errs []error
	for _, dir := range []string{l.storeDir(), l.validDir()} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("read %s: %w", dir, err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				if err := nar.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
