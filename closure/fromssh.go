package closure

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
	stderrtail "github.com/nixos-via/nixos-via/internal/tail"
)

// SSHStoreURL is an ssh:// or ssh-ng:// store given with --from, as Nix
// reads it: ssh://[USER@]HOST[:PORT] (a port in the URL since Nix 2.31;
// before, only ssh_config could give one) with the parameters ssh-key,
// base64-ssh-public-host-key, compress and remote-program.
type SSHStoreURL struct {
	Store string // as given
	User  string // "" when the URL has none (ssh_config's, else root)
	Host  string // without brackets
	Port  int    // 0 when the URL has none (ssh_config's, else 22)
	// SSHKey is ?ssh-key=, a private key file tried first.
	SSHKey string
	// HostKey is ?base64-ssh-public-host-key= decoded: the only key the
	// host may present; nil when not given (known_hosts decides).
	HostKey ssh.PublicKey
	// NixStore is the remote nix-store command, as words: ?remote-program=
	// for ssh:// (default nix-store); for ssh-ng://, whose remote-program
	// is nix-daemon, the nix-store beside it.
	NixStore []string
}

// Destination is [USER@]HOST as target.Options takes it.
func (u SSHStoreURL) Destination() string {
	if u.User != "" {
		return u.User + "@" + u.Host
	}
	return u.Host
}

// ParseSSHStore reads ssh://[USER@]HOST[:PORT] and ssh-ng://… with the
// parameters Nix's SSH stores share (ssh-key, base64-ssh-public-host-key,
// compress) and remote-program. Anything else is refused: remote-store
// (a store other than the host's default one), a path, a password, a
// parameter this reader would silently ignore.
func ParseSSHStore(store string) (SSHStoreURL, error) {
	fail := func(format string, args ...any) (SSHStoreURL, error) {
		return SSHStoreURL{}, fmt.Errorf("--from %q: %s", truncate(store), fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(store)
	if err != nil {
		return fail("%v", errors.Unwrap(err))
	}
	if u.Scheme != "ssh" && u.Scheme != "ssh-ng" {
		return fail("not an ssh:// or ssh-ng:// store")
	}
	if u.Opaque != "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" || u.RawFragment != "" {
		return fail("want %s://[USER@]HOST[:PORT][?PARAMS]", u.Scheme)
	}
	s := SSHStoreURL{Store: store, Host: u.Hostname()}
	if strings.HasPrefix(s.Host, "-") {
		return fail("host name must not start with '-'")
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return fail("a password in the URL is not supported (use a key, or --env-password for the target)")
		}
		s.User = u.User.Username()
		if s.User == "" || strings.HasPrefix(s.User, "-") {
			return fail("user name %q: empty or starting with '-'", s.User)
		}
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fail("port %q: want 1 to 65535", p)
		}
		s.Port = n
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fail("parameters: %v", err)
	}
	program := ""
	for k, v := range query {
		if len(v) != 1 {
			return fail("store parameter %s given %d times", k, len(v))
		}
		val := v[0]
		switch k {
		case "ssh-key":
			if val == "" {
				return fail("ssh-key is empty")
			}
			s.SSHKey = val
		case "base64-ssh-public-host-key":
			if s.HostKey, err = parseHostKeyParam(val); err != nil {
				return fail("base64-ssh-public-host-key: %v", err)
			}
		case "compress":
			// SSH compression (ssh -C) is a speed choice only; the Go
			// SSH client here has none, so it changes nothing.
			if val != "true" && val != "false" {
				return fail("compress=%q: want true or false", val)
			}
		case "remote-program":
			program = val
		case "remote-store":
			return fail("remote-store is not supported: the closure is read from the host's default store")
		default:
			return fail("store parameter %q is not supported (ssh-key, base64-ssh-public-host-key, compress and remote-program are)", k)
		}
	}
	if s.NixStore, err = nixStoreCommand(u.Scheme, program); err != nil {
		return fail("%v", err)
	}
	return s, nil
}

// parseHostKeyParam decodes base64-ssh-public-host-key: base64 of a
// known_hosts key ("ssh-ed25519 AAAA…"), as Nix writes it after the host
// name into a known_hosts file of its own.
func parseHostKeyParam(val string) (ssh.PublicKey, error) {
	raw, err := base64.StdEncoding.DecodeString(val)
	if err != nil {
		return nil, err
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(raw)
	if err != nil {
		return nil, fmt.Errorf("not a public key line: %w", err)
	}
	return key, nil
}

// nixStoreCommand is the remote nix-store command for scheme and its
// remote-program ("" for the default). remote-program is a list of words
// (a Nix Strings setting); for ssh-ng:// it runs nix-daemon, whose
// nix-store is beside it.
func nixStoreCommand(scheme, program string) ([]string, error) {
	words := strings.Fields(program)
	if len(words) == 0 {
		return []string{"nix-store"}, nil
	}
	if scheme == "ssh" {
		return words, nil
	}
	last := words[len(words)-1]
	if path.Base(last) != "nix-daemon" {
		return nil, fmt.Errorf("remote-program %q: for ssh-ng:// want a nix-daemon (its nix-store beside it is what is run)", program)
	}
	words[len(words)-1] = strings.TrimSuffix(last, "nix-daemon") + "nix-store"
	return words, nil
}

// IsSSHStore says whether store is an ssh:// or ssh-ng:// URL.
func IsSSHStore(store string) bool {
	return strings.HasPrefix(store, "ssh://") || strings.HasPrefix(store, "ssh-ng://")
}

// SSHStore reads a closure from a remote Nix store by running its
// nix-store over SSH: `--query --requisites` and `--dump-db PATH...`
// (paths taken since Nix 2.3) for the path-info, `--dump PATH` for each
// NAR, through a few long-lived sessions over the one connection (see
// the package doc). These outputs have kept their format since Nix 2.3
// (the narHash as bare base16), while the serve and worker protocols
// changed versions many times; ssh-ng:// goes the same way. The remote
// store's registered narHash is what every NAR is checked against:
// `--dump` reads the files themselves, so a path changed on disk since it
// was registered is caught.
type SSHStore struct {
	url  SSHStoreURL
	run  Runner
	idle chan *dumpSession
}

// NewSSHStore reads the store at u through run (a *target.Conn to u's
// host; a local runner in tests).
func NewSSHStore(u SSHStoreURL, run Runner) *SSHStore {
	return &SSHStore{url: u, run: run, idle: make(chan *dumpSession, maxIdleDumps)}
}

// Bounds on what an ssh:// --from store may make us do: the path-info
// text of one closure, and how long reading it may take.
const (
	maxDumpDB      = 256 << 20
	closureTimeout = 5 * time.Minute
)

// script is a POSIX sh script run by `sh -c`, whatever the login shell.
func (s *SSHStore) script(body string) string {
	return "sh -c " + shellQuote(body)
}

func (s *SSHStore) nixStore(args ...string) string {
	var q []string
	for _, w := range s.url.NixStore {
		q = append(q, shellQuote(w))
	}
	for _, a := range args {
		q = append(q, shellQuote(a))
	}
	return strings.Join(q, " ")
}

// Closure returns the path-info of top's closure in the remote store,
// sorted by path.
func (s *SSHStore) Closure(ctx context.Context, top string) ([]nix.PathInfo, error) {
	if err := nix.CheckStorePath(top); err != nil {
		return nil, fmt.Errorf("closure of %s in %s: %w", top, s.url.Store, err)
	}
	// The paths go to --dump-db through xargs: a closure's list may be
	// longer than one command line takes.
	body := "set -e; p=$(" + s.nixStore("--query", "--requisites", top) + "); printf '%s\\n' $p | xargs " + s.nixStore("--dump-db")
	ctx, cancel := context.WithTimeout(ctx, closureTimeout)
	defer cancel()
	out := &dumpDBBuffer{left: maxDumpDB}
	stderr := stderrtail.New(4096)
	if err := s.run.Run(ctx, s.script(body), nil, out, stderr); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil {
			msg += fmt.Sprintf(" (no answer within %s)", closureTimeout)
		}
		if strings.Contains(msg, "no arguments expected") {
			msg += " (nix-store --dump-db takes paths since Nix 2.3)"
		}
		return nil, fmt.Errorf("closure of %s in %s: nix-store --query --requisites | --dump-db: %w: %s", top, s.url.Store, err, msg)
	}
	infos, err := nix.ParseRegistration(&out.Buffer)
	if err != nil {
		return nil, fmt.Errorf("closure of %s in %s: %w", top, s.url.Store, err)
	}
	if len(infos) == 0 || len(infos) > maxFromPaths {
		return nil, fmt.Errorf("closure of %s in %s: %d paths", top, s.url.Store, len(infos))
	}
	have := map[string]bool{}
	for i := range infos {
		sort.Strings(infos[i].References)
		if have[infos[i].Path] {
			return nil, fmt.Errorf("closure of %s in %s: %s listed twice", top, s.url.Store, infos[i].Path)
		}
		have[infos[i].Path] = true
	}
	if !have[top] {
		return nil, fmt.Errorf("closure of %s in %s: the store did not list it", top, s.url.Store)
	}
	for _, info := range infos {
		for _, r := range info.References {
			if !have[r] {
				return nil, fmt.Errorf("closure of %s in %s: %s refers to %s, not in the closure", top, s.url.Store, info.Path, r)
			}
		}
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Path < infos[j].Path })
	return infos, nil
}

// dumpDBBuffer is a bytes.Buffer that refuses more than left bytes.
type dumpDBBuffer struct {
	bytes.Buffer
	left int
}

func (c *dumpDBBuffer) Write(p []byte) (int, error) {
	if len(p) > c.left {
		return 0, fmt.Errorf("more than %d bytes of path-info", maxDumpDB)
	}
	c.left -= len(p)
	return c.Buffer.Write(p)
}

// A dump session is one remote shell that dumps the paths written to its
// stdin, one a line, back to back on its stdout: one SSH session serves
// many NARs (a session costs round trips and a login on the host).
// A path nix-store cannot dump ends the session, so a NAR's bytes are
// never taken for the next one's. A session is used by one NAR at a time.
type dumpSession struct {
	stdin  *io.PipeWriter
	stdout *io.PipeReader
	stderr *stderrtail.Buffer
	cancel context.CancelFunc
	done   chan error // the remote shell's end, once
	used   bool       // it has served a NAR
}

// maxIdleDumps bounds the idle dump sessions kept (sshd allows 10
// sessions on one connection by default).
const maxIdleDumps = 8

// startDump starts a dump session. It outlives ctx's caller (it waits
// idle for the next NAR) but not ctx's values.
func (s *SSHStore) startDump(ctx context.Context) *dumpSession {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	d := &dumpSession{stdin: inW, stdout: outR, stderr: stderrtail.New(4096), cancel: cancel, done: make(chan error, 1)}
	body := `while IFS= read -r p; do ` + s.nixStore("--dump") + ` "$p" || exit 1; done`
	go func() {
		err := s.run.Run(ctx, s.script(body), inR, outW, d.stderr)
		outW.CloseWithError(fmt.Errorf("the dump session ended: %v", err))
		inR.Close()
		d.done <- err
	}()
	return d
}

// kill ends d and returns how the remote shell ended.
func (d *dumpSession) kill() error {
	d.cancel()
	d.stdin.Close()
	d.stdout.CloseWithError(errors.New("dump session closed"))
	return <-d.done
}

func (s *SSHStore) getDump(ctx context.Context) *dumpSession {
	select {
	case d := <-s.idle:
		return d
	default:
		return s.startDump(ctx)
	}
}

func (s *SSHStore) putDump(d *dumpSession) {
	d.used = true
	select {
	case s.idle <- d:
	default:
		d.kill()
	}
}

// Close ends the idle dump sessions.
func (s *SSHStore) Close() error {
	for {
		select {
		case d := <-s.idle:
			d.kill()
		default:
			return nil
		}
	}
}

// countingWriter counts what reaches w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NAR streams info.Path's NAR from the remote store to w and checks it
// against info: a well-formed NAR of info's size and hash. A mismatch is
// an error naming the path, after which what w got must be dropped (the
// agent refuses it too). An idle session that died meanwhile is replaced
// once, when nothing was written yet.
func (s *SSHStore) NAR(ctx context.Context, info nix.PathInfo, w io.Writer) (nar.Result, error) {
	if err := nix.CheckStorePath(info.Path); err != nil {
		return nar.Result{}, fmt.Errorf("NAR from %s: %w", s.url.Store, err)
	}
	cw := &countingWriter{w: w}
	for {
		d := s.getDump(ctx)
		reused := d.used
		res, err := s.dumpOne(ctx, d, info, cw)
		if err != nil && reused && cw.n == 0 && ctx.Err() == nil {
			continue
		}
		return res, err
	}
}

// dumpOne has d dump info.Path to w and checks it; d goes back to the
// pool when all went well, else it is ended.
func (s *SSHStore) dumpOne(ctx context.Context, d *dumpSession, info nix.PathInfo, w io.Writer) (nar.Result, error) {
	stop := context.AfterFunc(ctx, func() { d.stdout.CloseWithError(ctx.Err()) })
	var res nar.Result
	_, verr := io.WriteString(d.stdin, info.Path+"\n")
	// A host that stops sending is given up after fromStallAfter.
	watch := &progressReader{r: d.stdout, timeout: fromStallAfter, cancel: func() { d.stdout.CloseWithError(errors.New("stalled")) }}
	watch.timer = time.AfterFunc(watch.timeout, watch.look)
	lr := &io.LimitedReader{R: watch, N: int64(info.NarSize) + 1}
	if verr == nil {
		res, verr = nar.Verify(io.TeeReader(lr, w))
	}
	watch.stop()
	if !stop() {
		verr = ctx.Err()
	}
	if verr == nil && (res.Hash != info.NarHash || res.Size != info.NarSize) {
		d.kill()
		return res, fmt.Errorf("%s: NAR from %s is %s (%d bytes) but the store registered %s (%d bytes): the path changed on that host since it was registered", info.Path, s.url.Store, res.Hash, res.Size, info.NarHash, info.NarSize)
	}
	if verr == nil {
		s.putDump(d)
		return res, nil
	}
	rerr := d.kill()
	if msg := strings.TrimSpace(d.stderr.String()); rerr != nil && msg != "" {
		return res, fmt.Errorf("%s: nix-store --dump on %s: %w: %s", info.Path, s.url.Host, rerr, msg)
	}
	if lr.N == 0 {
		verr = fmt.Errorf("longer than the %d bytes the store registered", info.NarSize)
	}
	return res, fmt.Errorf("%s: NAR from %s: %w", info.Path, s.url.Store, verr)
}
