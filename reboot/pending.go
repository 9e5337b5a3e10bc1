package reboot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// PendingMaxAge is how long a pending-reboot note is trusted: a later
// run finds the installed system up within it or not at all.
const PendingMaxAge = 24 * time.Hour

// Pending is the note the reboot phase leaves on this machine while it
// reboots a host: a run stopped in the reboot wait (killed, say) leaves
// it behind, and the next run against the same host uses it to confirm
// the installed system as the stopped one would have (Confirm). It holds
// no secret.
type Pending struct {
	Addr     string `json:"addr"` // host:port as dialled, the note's key
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Toplevel string `json:"toplevel"` // the installed system
	BootID   string `json:"boot_id"`  // the installer's, before the reboot
	// InstallerKeys are the installer's host keys (authorized_keys lines).
	InstallerKeys []string  `json:"installer_host_keys,omitempty"`
	Time          time.Time `json:"time"`
}

// PendingPath is the note's file for addr in dir.
func PendingPath(dir, addr string) string {
	sum := sha256.Sum256([]byte(addr))
	return filepath.Join(dir, hex.EncodeToString(sum[:16])+".json")
}

// WritePending writes p into dir (mode 0600, the directory 0700).
func WritePending(dir string, p Pending) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write the pending-reboot note: %w", err)
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("write the pending-reboot note: %w", err)
	}
	path := PendingPath(dir, p.Addr)
	tmp, err := os.CreateTemp(dir, ".pending-*")
	if err != nil {
		return fmt.Errorf("write the pending-reboot note: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write the pending-reboot note %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write the pending-reboot note: %w", err)
	}
	return nil
}

// ReadPending is the note for addr in dir; nil and no error when there
// is none.
func ReadPending(dir, addr string) (*Pending, error) {
	data, err := os.ReadFile(PendingPath(dir, addr))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the pending-reboot note: %w", err)
	}
	var p Pending
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("read the pending-reboot note %s: %w", PendingPath(dir, addr), err)
	}
	return &p, nil
}

// RemovePending removes the note for addr in dir, if any.
func RemovePending(dir, addr string) error {
	if err := os.Remove(PendingPath(dir, addr)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the pending-reboot note: %w", err)
	}
	return nil
}

// Matches says p is a reboot of addr into toplevel begun less than
// PendingMaxAge before now; otherwise why not.
func (p *Pending) Matches(addr, toplevel string, now time.Time) (bool, string) {
	age := now.Sub(p.Time)
	switch {
	case p.Addr != addr:
		return false, fmt.Sprintf("the note is for %s, not %s", p.Addr, addr)
	case p.Toplevel == "" || p.Toplevel != toplevel:
		return false, fmt.Sprintf("the earlier run installed %s, not the system built now (%s)", p.Toplevel, toplevel)
	case age < -time.Minute || age >= PendingMaxAge:
		return false, fmt.Sprintf("the earlier run's reboot began %s, not within the last %s", p.Time.Format(time.RFC3339), PendingMaxAge)
	case p.BootID == "":
		return false, "the note has no boot id"
	}
	return true, ""
}

// installerKeys are p's installer host keys, parsed.
func (p *Pending) installerKeys() ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for _, line := range p.InstallerKeys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("read the pending-reboot note's host key %q: %w", line, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// authorizedLines are keys as authorized_keys lines.
func authorizedLines(keys []ssh.PublicKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
	}
	return out
}
