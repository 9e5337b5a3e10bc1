package closure

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

const (
	tmpPrefix = ".nixos-via-tmp-"
	// ValidDir is where, under the target root, the receiver records the
	// paths it received: one file per committed batch, see receiver.commit.
	ValidDir = "nix/var/nixos-via/valid"

	recordsHeader = "nixos-via-records 1"
	recordsSuffix = ".reg"
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

// recordName names a new batch record file; names sort by creation time.
func recordName() string {
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%020d-%s%s", time.Now().UnixNano(), hex.EncodeToString(r[:]), recordsSuffix)
}

// encodeRecords renders a batch record file: a header line, the
// registration text of the paths, and "end <count>" — a file without its
// end line is torn and ignored.
func encodeRecords(infos []nix.PathInfo) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(recordsHeader + "\n")
	if err := nix.WriteRegistration(&b, infos); err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "end %d\n", len(infos))
	return b.Bytes(), nil
}

func decodeRecords(data []byte) ([]nix.PathInfo, error) {
	body, ok := bytes.CutPrefix(data, []byte(recordsHeader+"\n"))
	if !ok {
		return nil, errors.New("no header")
	}
	i := bytes.LastIndex(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	last := body[i+1:]
	if i < 0 {
		last, body = body, nil
	} else {
		body = body[:i+1]
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(last), "end ")))
	if !bytes.HasPrefix(last, []byte("end ")) || !bytes.HasSuffix(last, []byte("\n")) || err != nil {
		return nil, errors.New("no end line (torn write?)")
	}
	infos, err := nix.ParseRegistration(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if len(infos) != n {
		return nil, fmt.Errorf("%d records, end line says %d", len(infos), n)
	}
	return infos, nil
}

// records loads every batch record file, later files overriding earlier
// ones. Unreadable or torn files are skipped: a path without a record is
// simply sent again.
func (l layout) records() (map[string]nix.PathInfo, error) {
	entries, err := os.ReadDir(l.validDir())
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]nix.PathInfo{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	recs := map[string]nix.PathInfo{}
	for _, e := range entries { // ReadDir sorts by name: oldest first
		if strings.HasPrefix(e.Name(), tmpPrefix) || !strings.HasSuffix(e.Name(), recordsSuffix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(l.validDir(), e.Name()))
		if err != nil {
			continue
		}
		infos, err := decodeRecords(data)
		if err != nil {
			continue
		}
		for _, info := range infos {
			recs[info.Path] = info
		}
	}
	return recs, nil
}

// valid reports whether storePath is present under root with a record whose
// narHash is want.
func (l layout) valid(recs map[string]nix.PathInfo, storePath string, want nar.Hash) bool {
	rec, ok := recs[storePath]
	if !ok || rec.NarHash != want {
		return false
	}
	_, err := os.Lstat(l.final(storePath))
	return err == nil
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
