package kexec

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// AccessKey is a run's throwaway SSH key for logging into the installer.
// The installer trusts only the authorized_keys files kexec/run carries
// over (root's, the sudo user's, /etc/ssh/authorized_keys.d), so a host we
// reached with a password, or with keys from AuthorizedKeysCommand or
// another AuthorizedKeysFile, would let nobody in after kexec. The key is
// added to those files before kexec/run and offered after it. Its private
// half lives in memory only (Signer); the old system, and with it the
// line, is gone once the installer runs.
type AccessKey struct {
	Signer  ssh.Signer
	Comment string // nixos-via-<run id>, the line's comment
	Line    string // the authorized_keys line, without newline
	// Files are where Line was appended on the host.
	Files []string
}

// newAccessKey makes an ed25519 key whose authorized_keys line ends in
// "nixos-via-<runID>".
func newAccessKey(runID string) (*AccessKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the throwaway ed25519 key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ssh.NewSignerFromKey: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("ssh.NewPublicKey: %w", err)
	}
	k := &AccessKey{Signer: signer, Comment: "nixos-via-" + runID}
	k.Line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + k.Comment
	return k, nil
}

// newRunID is a short name for one run, the date and random hex (the
// throwaway key's comment says which run added it).
func newRunID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes for the run id: %w", err)
	}
	return time.Now().UTC().Format("20060102") + "-" + hex.EncodeToString(b), nil
}

// EnsureAccessKey makes sure the installer will let us in as root. It
// trusts only the authorized_keys files kexec/run carries over (root's and
// those of the user sudo or doas runs it for, the login user); when none of
// the keys conn offers is in them (a password login offers none; keys from
// AuthorizedKeysCommand or another AuthorizedKeysFile are not in them), a
// throwaway key for this run is appended to the login user's and root's
// authorized_keys and returned, for kexec's Options.Signers. It returns
// nil when no key is needed. When adding fails, what was added is taken out
// again (or the error says where it is).
func EnsureAccessKey(ctx context.Context, conn *target.Conn, facts *target.Facts) (*AccessKey, error) {
	sudoUser := ""
	if !facts.IsRoot {
		sudoUser = facts.User
	}
	carried, err := carriedKeys(ctx, conn, sudoUser)
	if err != nil {
		return nil, err
	}
	if installerTrusts(conn.OfferedKeys(), carried) {
		return nil, nil
	}
	id, err := newRunID()
	if err != nil {
		return nil, err
	}
	k, err := newAccessKey(id)
	if err != nil {
		return nil, err
	}
	if err := k.add(ctx, conn, facts.IsRoot); err != nil {
		if len(k.Files) > 0 {
			rctx, cancel := phase.CleanupContext(ctx)
			rmErr := k.Remove(rctx, conn)
			cancel()
			if rmErr != nil {
				return nil, fmt.Errorf("%w; %s", err, k.Where())
			}
		}
		return nil, err
	}
	return k, nil
}

// carriedKeysScript prints the authorized_keys files kexec/run takes into
// the installer (see images/installer.go and nixos-images' run), for the
// sudo/doas user $1 too when it is set and not root. It runs as root.
const carriedKeysScript = `u=$1
for f in /root/.ssh/authorized_keys /root/.ssh/authorized_keys2 /etc/ssh/authorized_keys.d/root; do
	[ -r "$f" ] && cat "$f" && echo
done
if [ -n "$u" ] && [ "$u" != root ]; then
	h=$(awk -F: -v u="$u" '$1 == u { print $6 }' /etc/passwd)
	if [ -n "$h" ]; then
		for f in "$h/.ssh/authorized_keys" "$h/.ssh/authorized_keys2"; do
			[ -r "$f" ] && cat "$f" && echo
		done
	fi
	[ -r "/etc/ssh/authorized_keys.d/$u" ] && cat "/etc/ssh/authorized_keys.d/$u" && echo
fi
exit 0
`

// carriedKeys reads, as root, the authorized keys kexec/run will carry
// into the installer: root's, and those of sudoUser (the login user when
// it becomes root with sudo or doas; "" when it is root).
func carriedKeys(ctx context.Context, conn *target.Conn, sudoUser string) ([]ssh.PublicKey, error) {
	out, err := conn.Output(ctx, "sh -c "+target.ShellQuote(carriedKeysScript)+" sh "+target.ShellQuote(sudoUser), nil)
	if err != nil {
		return nil, fmt.Errorf("read the authorized_keys files kexec/run carries into the installer: %w", err)
	}
	var keys []ssh.PublicKey
	rest := out
	for len(bytes.TrimSpace(rest)) > 0 {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			break // no key in the rest (ParseAuthorizedKey skips bad lines)
		}
		keys = append(keys, k)
		rest = r
	}
	return keys, nil
}

// installerTrusts says whether one of the keys we offer is among the keys
// the installer takes over (a DSA key does not count: OpenSSH refuses it).
func installerTrusts(offered, carried []ssh.PublicKey) bool {
	for _, o := range offered {
		if o.Type() == ssh.KeyAlgoDSA {
			continue
		}
		for _, c := range carried {
			if bytes.Equal(o.Marshal(), c.Marshal()) {
				return true
			}
		}
	}
	return false
}

// addKeyScript appends the line on stdin to the authorized_keys file $f
// (set before it), creating its directory 0700 and the file 0600 when they
// are missing; existing modes stay. It prints the file's path.
const addKeyScript = `set -e
d=$(dirname "$f")
umask 077
[ -d "$d" ] || mkdir -m 700 -p "$d"
[ -e "$f" ] || { : > "$f"; chmod 600 "$f"; }
if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f"; fi
cat >> "$f"
if command -v restorecon >/dev/null 2>&1; then restorecon -R "$d" >/dev/null 2>&1 || true; fi
echo "$f"
`

// add appends Line to the login user's ~/.ssh/authorized_keys (as that
// user) and, when the login user is not root, to root's
// /root/.ssh/authorized_keys (as root, with sudo or doas). Files records
// each file once the line is in it, also when add fails half way.
func (k *AccessKey) add(ctx context.Context, conn *target.Conn, loginIsRoot bool) error {
	type dest struct {
		set    string // the script's first line
		asRoot bool
	}
	dests := []dest{{`f=/root/.ssh/authorized_keys`, true}}
	if !loginIsRoot {
		dests = []dest{{`f="${HOME:?}/.ssh/authorized_keys"`, false}, dests[0]}
	}
	for _, d := range dests {
		cmd := "sh -c " + target.ShellQuote(d.set+"\n"+addKeyScript)
		in := strings.NewReader(k.Line + "\n")
		var out, errb bytes.Buffer
		run := conn.RunAsLogin
		if d.asRoot {
			run = conn.Run
		}
		if err := run(ctx, cmd, in, &out, &errb); err != nil {
			return fmt.Errorf("add the throwaway key to %s: %w: %s", strings.TrimPrefix(d.set, "f="), err, strings.TrimSpace(errb.String()))
		}
		f := strings.TrimSpace(out.String())
		if f == "" {
			return fmt.Errorf("add the throwaway key to %s: the host did not say which file", strings.TrimPrefix(d.set, "f="))
		}
		k.Files = append(k.Files, f)
	}
	return nil
}

// removeKeyScript drops the lines with the comment $1 from the files $2...
// in place (the files keep their inode, owner and mode).
const removeKeyScript = `c=$1; shift
for f in "$@"; do
	[ -f "$f" ] || continue
	t=$(mktemp) || exit 1
	grep -v -F -e " $c" "$f" > "$t" || true
	cat "$t" > "$f" || { rm -f "$t"; exit 1; }
	rm -f "$t"
done
`

// Remove takes Line out of Files again (a run that failed while the old
// system still runs). It works as root, which can write every one of them.
func (k *AccessKey) Remove(ctx context.Context, conn *target.Conn) error {
	if len(k.Files) == 0 {
		return nil
	}
	cmd := "sh -c " + target.ShellQuote(removeKeyScript) + " sh " + target.ShellQuote(k.Comment)
	for _, f := range k.Files {
		cmd += " " + target.ShellQuote(f)
	}
	var errb bytes.Buffer
	if err := conn.Run(ctx, cmd, nil, nil, &errb); err != nil {
		return fmt.Errorf("remove the throwaway key from %s: %w: %s", strings.Join(k.Files, " and "), err, strings.TrimSpace(errb.String()))
	}
	k.Files = nil
	return nil
}

// Where says where the line is and how to remove it, for an error of a
// run that stopped before the installer answered; "" when it is nowhere.
func (k *AccessKey) Where() string {
	if k == nil || len(k.Files) == 0 {
		return ""
	}
	return fmt.Sprintf("this run's throwaway key (%s) is still in %s on the host's own system; remove it there with: sed -i '/ %s$/d' %s",
		k.Comment, strings.Join(k.Files, " and "), k.Comment, strings.Join(k.Files, " "))
}
