package kexec

import (
	"net/http"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Options shape the phase (Run) and its reconnect (Reconnect).
type Options struct {
	// Facts are what the probe found on the connection Run starts from.
	Facts *target.Facts
	// Source is --kexec, the installer tarball's URL or file; "" is the
	// nixos-images release for the host's arch (DefaultURL).
	Source string
	SHA256 string // --kexec-sha256: refuse a tarball whose sha256 differs
	// Tarball is Source already fetched (a local file is fetched before
	// the first connection, so a bad one costs no login); nil fetches it.
	Tarball *Tarball
	Force   bool // kexec even when the host already runs an installer
	// CacheDir keeps fetched tarballs; HTTP fetches them (nil: a client
	// with a 30 min timeout).
	CacheDir string
	HTTP     *http.Client

	ExtraFlags string // --kexec-extra-flags, passed to run
	// PostKexecPort is the installer's SSH port; 0 tries the port used
	// before kexec and 22, whichever answers with the same host key.
	PostKexecPort int
	// DownTimeout bounds the wait for the host to go away after run;
	// UpTimeout the wait for the installer to answer.
	DownTimeout, UpTimeout time.Duration
	// Interval between connection attempts (default 2 s).
	Interval time.Duration
	Home     string // for ~/.ssh (known_hosts of the reconnect)
	// Signers are in-memory keys the installer trusts (the run's
	// AccessKey), offered first after kexec and kept in the new
	// connection's Resolved for every later dial.
	Signers []ssh.Signer
	Events  event.Sink // Reconnect's events; Run sets it to its sink
	// Kexecing, when set, is called just before the installer's kexec is
	// started: from then on the host may be booting the installer.
	Kexecing func()
	// Left, when set, is told which directories a failed upload leaves
	// on the host: the staging directory a cut upload keeps for the next
	// run to resume, and a work directory a lost connection could not
	// remove.
	Left func(dirs []string)
}

// httpClient is the client that fetches tarballs.
func (o Options) httpClient() *http.Client {
	if o.HTTP != nil {
		return o.HTTP
	}
	return &http.Client{Timeout: 30 * time.Minute}
}

// UserCacheDir is where a user's fetched tarballs are kept:
// $XDG_CACHE_HOME/nixos-via/kexec, or else HOME/.cache/nixos-via/kexec.
func UserCacheDir(xdgCacheHome, home string) string {
	if xdgCacheHome != "" {
		return filepath.Join(xdgCacheHome, "nixos-via", "kexec")
	}
	return filepath.Join(home, ".cache", "nixos-via", "kexec")
}
