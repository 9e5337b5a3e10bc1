package target

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// AuthError says the host answered but refused every credential we have.
type AuthError struct {
	User, Host string
	Tried      []string
	Err        error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("ssh %s@%s: authentication failed (tried %s): %v", e.User, e.Host, strings.Join(e.Tried, ", "), e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// ConnectError says the host could not be reached (refused, timed out, no route).
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("connect %s: %v", e.Addr, e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// Conn is one SSH connection to one host (through any ProxyJump hops).
type Conn struct {
	client  *ssh.Client
	hops    []*ssh.Client // jump hosts, closed after client
	res     *Resolved
	hostKey ssh.PublicKey
	keys    *hostKeySet
	agent   net.Conn
	offered []ssh.PublicKey // the public keys authMethods offered

	mu           sync.Mutex
	escalate     Escalation // how to become root, set by SetEscalation
	sudoPassword bool       // sudo needs Options.SudoPassword on stdin
	stopKA       chan struct{}
	closed       bool
}

// Resolved says where the connection goes.
func (c *Conn) Resolved() *Resolved { return c.res }

// HostKey is the key the host presented.
func (c *Conn) HostKey() ssh.PublicKey { return c.hostKey }

// HostKeys is the host's key set as far as this connection learnt it: the
// key it presented first, then the keys its sshd announced
// (hostkeys-00@openssh.com) and those ProbeFacts read from /etc/ssh. They
// came over the verified connection, so any of them identifies the host:
// after kexec the installer must present one of them.
func (c *Conn) HostKeys() []ssh.PublicKey { return c.keys.list() }

// AddHostKeys adds keys the host says are its own (read over this
// connection) to HostKeys, and to known_hosts when the connection was
// checked there (see hostKeySet).
func (c *Conn) AddHostKeys(keys []ssh.PublicKey) { c.keys.add(keys) }

// OfferedKeys are the public keys this connection offers when it
// authenticates (Options.Signers, the agent's keys, the identity files), in
// that order, whether or not one of them let it in.
func (c *Conn) OfferedKeys() []ssh.PublicKey { return slices.Clone(c.offered) }

// Client exposes the underlying SSH client (for SFTP and channels).
func (c *Conn) Client() *ssh.Client { return c.client }

// Close ends the connection and every hop.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.stopKA != nil {
		close(c.stopKA)
	}
	c.mu.Unlock()
	err := c.client.Close()
	for i := len(c.hops) - 1; i >= 0; i-- {
		c.hops[i].Close()
	}
	if c.agent != nil {
		c.agent.Close()
	}
	return err
}

// Dial resolves opts (ssh_config, -o options) and connects, through every
// ProxyJump hop. home is the user's home directory (for ~/.ssh).
func Dial(ctx context.Context, opts Options, home string) (*Conn, error) {
	res, err := opts.Resolve(home)
	if err != nil {
		return nil, err
	}
	return DialResolved(ctx, res, home)
}

// DialResolved connects to an already resolved destination.
func DialResolved(ctx context.Context, res *Resolved, home string) (*Conn, error) {
	auth, agentConn, tried, offered, err := authMethods(res)
	if err != nil {
		return nil, err
	}
	c := &Conn{res: res, agent: agentConn, offered: offered}
	var via *ssh.Client
	if res.ProxyJump != "" {
		for _, hop := range strings.Split(res.ProxyJump, ",") {
			hopOpts := res.Options
			hopOpts.Destination = strings.TrimSpace(hop)
			hopOpts.User, hopOpts.Port, hopOpts.ProxyJump, hopOpts.ProxyCommand = "", 0, "none", ""
			// Pins and the key set are the target's, not the jump host's.
			hopOpts.HostKeyAlgorithms, hopOpts.PinnedKeys, hopOpts.PinnedKey = nil, nil, nil
			hopOpts.HostKeyPin, hopOpts.HostKeyPins, hopOpts.ReplaceKnownHost = "", nil, false
			hopOpts.Signers = nil // the target's throwaway key, unknown to a hop
			hopOpts.SSHOptions = filterOptions(res.SSHOptions, "port", "user", "hostname", "proxyjump", "proxycommand", "hostkeyalgorithms")
			hopRes, err := hopOpts.Resolve(home)
			if err != nil {
				c.closeHops()
				return nil, fmt.Errorf("ProxyJump %s: %w", hop, err)
			}
			hopAuth, hopAgent, hopTried, _, err := authMethods(hopRes)
			if err != nil {
				c.closeHops()
				return nil, fmt.Errorf("ProxyJump %s: %w", hop, err)
			}
			if hopAgent != nil {
				defer hopAgent.Close()
			}
			h, err := dialOne(ctx, via, hopRes, hopAuth, hopTried)
			if err != nil {
				c.closeHops()
				return nil, fmt.Errorf("ProxyJump %s: %w", hop, err)
			}
			c.hops = append(c.hops, h.client)
			via = h.client
		}
	}
	h, err := dialOne(ctx, via, res, auth, tried)
	if err != nil {
		c.closeHops()
		if agentConn != nil {
			agentConn.Close()
		}
		return nil, err
	}
	c.client, c.hostKey, c.keys = h.client, h.key, h.keys
	if res.ServerAliveInterval > 0 {
		c.stopKA = make(chan struct{})
		go c.keepalive(res.ServerAliveInterval)
	}
	return c, nil
}

func filterOptions(opts []string, drop ...string) []string {
	var out []string
	for _, o := range opts {
		k, _, err := ParseSSHOption(o)
		if err == nil && contains(drop, strings.ToLower(k)) {
			continue
		}
		out = append(out, o)
	}
	return out
}

func (c *Conn) closeHops() {
	for i := len(c.hops) - 1; i >= 0; i-- {
		c.hops[i].Close()
	}
	c.hops = nil
}

func (c *Conn) keepalive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stopKA:
			return
		case <-t.C:
			if _, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil); err != nil {
				c.client.Close()
				return
			}
		}
	}
}

// hop is one established SSH connection and what it learnt of the host.
type hop struct {
	client *ssh.Client
	key    ssh.PublicKey // the key the host presented
	keys   *hostKeySet
}

// dialOne does the TCP connect (directly, through via, or through a
// ProxyCommand) and the SSH handshake of one hop, both bounded by the
// hop's ConnectTimeout and ctx.
func dialOne(ctx context.Context, via *ssh.Client, res *Resolved, auth []ssh.AuthMethod, tried []string) (*hop, error) {
	user := res.HostKeyAlgorithms
	if pinned := res.pinnedKeys(); len(pinned) > 0 {
		// Ask for the types of the set, so that a host with several keys
		// shows one of them.
		h, err := dialHop(ctx, via, res, auth, tried, restrictAlgorithms(user, algorithmsForKeys(pinned)))
		var mm *HostKeyMismatchError
		if errors.As(err, &mm) && mm.noCommonType {
			// The host has no key of those types: show the key it has.
			_, err2 := dialHop(ctx, via, res, auth, tried, user)
			if errors.As(err2, &mm) && !mm.noCommonType {
				return nil, err2
			}
		}
		return h, err
	}
	pins := res.pins()
	if len(pins) == 0 {
		return dialHop(ctx, via, res, auth, tried, user)
	}
	// A fingerprint pin does not say the key type, and the server shows
	// one key per handshake: try the types one by one, ed25519 first.
	algos := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	if len(user) > 0 {
		algos = user
	}
	var seen []string
	var last *HostKeyMismatchError
	for {
		h, err := dialHop(ctx, via, res, auth, tried, algos)
		var mm *HostKeyMismatchError
		if !errors.As(err, &mm) || len(mm.KeyTypes) == 0 {
			if last != nil && mm != nil {
				// No key of the remaining types: report the keys seen.
				last.Got = strings.Join(seen, " and ")
				return nil, last
			}
			return h, err
		}
		last = mm
		seen = append(seen, mm.Got)
		var rest []string
		for _, a := range algos {
			if !contains(algorithmsFor(mm.KeyTypes[0]), a) {
				rest = append(rest, a)
			}
		}
		if len(rest) == len(algos) || len(rest) == 0 {
			mm.Got = strings.Join(seen, " and ")
			return nil, mm
		}
		algos = rest
	}
}

// pinnedKeys is the set of keys the host must present (PinnedKeys and
// PinnedKey), or nil. ReplaceKnownHost takes whatever key comes, whatever
// was pinned for the connection before (a copy of an installer's Resolved).
func (r *Resolved) pinnedKeys() []ssh.PublicKey {
	if r.ReplaceKnownHost {
		return nil
	}
	keys := slices.Clone(r.PinnedKeys)
	if r.PinnedKey != nil && !keyIn(keys, r.PinnedKey) {
		keys = append(keys, r.PinnedKey)
	}
	return keys
}

// pins is the set of fingerprints the host's key must have, or nil.
func (r *Resolved) pins() []string {
	if r.ReplaceKnownHost {
		return nil
	}
	pins := slices.Clone(r.HostKeyPins)
	if r.HostKeyPin != "" && !slices.Contains(pins, r.HostKeyPin) {
		pins = append(pins, r.HostKeyPin)
	}
	return pins
}

// algorithmsFor lists the host key algorithms that show a key of type t.
func algorithmsFor(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// dialHop is one connection attempt; algos restricts the host key
// algorithms (nil: the ones known_hosts has for the host, if any, when
// known_hosts decides).
func dialHop(ctx context.Context, via *ssh.Client, res *Resolved, auth []ssh.AuthMethod, tried []string, algos []string) (*hop, error) {
	addr := res.Addr()
	source := res.PinSource
	if source == "" {
		source = "--host-key"
	}
	pinned, pins := res.pinnedKeys(), res.pins()
	checker := &hostKeyChecker{files: res.KnownHostsFiles, strict: res.StrictHostKeyChecking, pins: pins,
		pinned: pinned, source: source, replace: res.ReplaceKnownHost, warn: res.Warn}
	cfg := &ssh.ClientConfig{
		User:              res.User,
		Auth:              auth,
		HostKeyCallback:   checker.check,
		Timeout:           res.ConnectTimeout,
		HostKeyAlgorithms: algos,
	}
	if algos == nil && len(pinned) == 0 && len(pins) == 0 && res.StrictHostKeyChecking != StrictNo && !res.ReplaceKnownHost {
		cfg.HostKeyAlgorithms = checker.knownKeyAlgorithms(addr)
	}
	dctx, cancel := context.WithTimeout(ctx, res.ConnectTimeout)
	defer cancel()
	nc, err := openConn(ctx, dctx, via, res, addr)
	if err != nil {
		return nil, err
	}
	stop := boundHandshake(dctx, nc)
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	stop()
	if err != nil {
		nc.Close()
		err = classifyHandshake(ctx, res, addr, checker, tried, cfg.HostKeyAlgorithms, err)
		if pc, ok := nc.(*cmdConn); ok {
			err = pc.explain(err)
		}
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	h := &hop{key: checker.Seen(), keys: &hostKeySet{hostname: addr, remote: nc.RemoteAddr(), warn: res.Warn, reqs: reqs}}
	h.keys.keys = []ssh.PublicKey{h.key}
	if checker.recordsKnownHosts() && len(res.KnownHostsFiles) > 0 {
		h.keys.record = res.KnownHostsFiles[0]
	}
	out := make(chan *ssh.Request, cap(reqs))
	go h.keys.serve(reqs, out)
	h.client = ssh.NewClient(sc, chans, out)
	h.keys.client = h.client
	return h, nil
}

// openConn opens the stream to addr an SSH handshake runs over: through
// via (the client of the hop before, if any), res's ProxyCommand or TCP,
// within dctx. A failure is ctx's error when ctx has ended, else a
// ConnectError.
func openConn(ctx, dctx context.Context, via *ssh.Client, res *Resolved, addr string) (net.Conn, error) {
	var nc net.Conn
	var err error
	switch {
	case via != nil:
		nc, err = via.DialContext(dctx, "tcp", addr)
	case res.ProxyCommand != "" && !strings.EqualFold(res.ProxyCommand, "none"):
		var pc *cmdConn
		if pc, err = dialProxyCommand(res); err == nil {
			nc = pc
		}
	default:
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &ConnectError{Addr: addr, Err: err}
	}
	return nc, nil
}

// boundHandshake bounds nc by dctx, since an SSH handshake has no context:
// by its deadline, and at once when it ends until stop is called.
func boundHandshake(dctx context.Context, nc net.Conn) (stop func() bool) {
	deadline, _ := dctx.Deadline()
	nc.SetDeadline(deadline)
	return context.AfterFunc(dctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
}

func classifyHandshake(ctx context.Context, res *Resolved, addr string, checker *hostKeyChecker, tried, algos []string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var mm *HostKeyMismatchError
	var unk *UnknownHostKeyError
	if errors.As(err, &mm) || errors.As(err, &unk) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no common algorithm for host key"):
		source := strings.Join(res.KnownHostsFiles, " or ")
		if len(res.pinnedKeys()) > 0 || len(res.pins()) > 0 {
			source = checker.source
		}
		return &HostKeyMismatchError{Host: addr, Got: "a key of another type", Want: []string{strings.Join(algos, "/") + " key(s)"},
			Source: source, noCommonType: true}
	case strings.Contains(msg, "unable to authenticate") || strings.Contains(msg, "no supported methods remain"):
		return &AuthError{User: res.User, Host: addr, Tried: tried, Err: err}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &ConnectError{Addr: addr, Err: fmt.Errorf("ssh handshake timed out after %s (the port accepts connections but no SSH server answers)", res.ConnectTimeout)}
	}
	if checker.Seen() == nil {
		return &ConnectError{Addr: addr, Err: fmt.Errorf("ssh handshake: %w", err)}
	}
	return fmt.Errorf("ssh %s: %w", addr, err)
}

// authMethods builds the auth list in OpenSSH's order: public keys
// (in-memory signers, agent, then identity files), keyboard-interactive,
// password. It also returns the public keys it offers.
func authMethods(res *Resolved) ([]ssh.AuthMethod, net.Conn, []string, []ssh.PublicKey, error) {
	// The in-memory keys go first: they are the ones the host was given
	// for this run, and sshd counts every key offered against MaxAuthTries.
	signers := slices.Clone(res.Signers)
	var tried []string
	if len(signers) > 0 {
		tried = append(tried, fmt.Sprintf("%d in-memory key(s)", len(signers)))
	}
	var agentConn net.Conn
	if res.AgentSocket != "" {
		if c, err := net.Dial("unix", res.AgentSocket); err == nil {
			agentConn = c
			if s, err := agent.NewClient(c).Signers(); err == nil && len(s) > 0 {
				signers = append(signers, s...)
				tried = append(tried, fmt.Sprintf("%d agent key(s)", len(s)))
			}
		} else if res.Warn != nil {
			res.Warn(fmt.Sprintf("ssh-agent at %s: %v (continuing without it)", res.AgentSocket, err))
		}
	}
	for _, f := range res.IdentityFiles {
		s, err := loadSigner(f, res.Prompt)
		if err != nil {
			if agentConn != nil {
				agentConn.Close()
			}
			return nil, nil, nil, nil, err
		}
		signers = append(signers, s)
		tried = append(tried, "key "+filepath.Base(f))
	}
	var auth []ssh.AuthMethod
	if len(signers) > 0 {
		auth = append(auth, ssh.PublicKeys(signers...))
	}
	if res.Password != "" {
		pw := res.Password
		auth = append(auth, ssh.Password(pw))
		auth = append(auth, ssh.KeyboardInteractive(func(name, instr string, questions []string, echos []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range questions {
				answers[i] = pw
			}
			return answers, nil
		}))
		tried = append(tried, "password")
	} else if res.Prompt != nil {
		prompt := res.Prompt
		auth = append(auth, ssh.KeyboardInteractive(func(name, instr string, questions []string, echos []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i, q := range questions {
				a, err := prompt(fmt.Sprintf("%s@%s %s", res.User, res.HostName, q), echos[i])
				if err != nil {
					return nil, err
				}
				answers[i] = a
			}
			return answers, nil
		}))
		tried = append(tried, "keyboard-interactive")
	}
	if len(auth) == 0 {
		return nil, nil, nil, nil, fmt.Errorf("ssh %s@%s: no credentials: give -i KEY, run an ssh-agent, or use --env-password with SSHPASS", res.User, res.HostName)
	}
	offered := make([]ssh.PublicKey, 0, len(signers))
	for _, s := range signers {
		offered = append(offered, s.PublicKey())
	}
	return auth, agentConn, tried, offered, nil
}

func loadSigner(file string, prompt func(string, bool) (string, error)) (ssh.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		if prompt == nil {
			return nil, fmt.Errorf("identity file %s is passphrase-protected and there is no terminal to ask for it; load it into ssh-agent instead", file)
		}
		pass, perr := prompt(fmt.Sprintf("Enter passphrase for key '%s': ", file), false)
		if perr != nil {
			return nil, fmt.Errorf("identity file %s: %w", file, perr)
		}
		s, err = ssh.ParsePrivateKeyWithPassphrase(data, []byte(pass))
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", file, err)
	}
	return s, nil
}
