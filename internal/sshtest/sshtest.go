// Package sshtest starts real OpenSSH sshd servers on 127.0.0.1 for tests,
// with throwaway host and client keys and a config of their own.
package sshtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is the path of OpenSSH's server.
const SSHD = "/usr/sbin/sshd"

// Options shape one server.
type Options struct {
	// AuthorizedKeys are public keys (authorized_keys lines) allowed for
	// every user; the server's own ClientKey is always allowed.
	AuthorizedKeys []string
	// Password enables password authentication (checked against /etc/shadow).
	Password bool
	// NoSFTP leaves the sftp subsystem out, so uploads must fall back.
	NoSFTP bool
	// HostKey reuses a host key (PEM, OpenSSH format) instead of a new one.
	HostKey []byte
	// Port listens on this port instead of a free one.
	Port int
	// ExtraConfig is appended to sshd_config.
	ExtraConfig string
	// HostKeyTypes adds host keys of these types ("rsa", "ecdsa",
	// "ed25519") beside HostKey, as a stock Debian server has them; an
	// "ed25519" here is HostKey itself. ServeHostKeys picks among them.
	HostKeyTypes []string
	// OSRelease, when set, is what the server's sessions see as
	// /etc/os-release (bind-mounted in a mount namespace of sshd's own), so
	// that the server can pass for another system, such as an installer.
	OSRelease string
	// Binds are directories (mount point -> source) bind-mounted in sshd's
	// own mount namespace, e.g. a temporary /root, so that a test may
	// change files there without touching this machine's.
	Binds map[string]string
	// HomeAuthorizedKeys makes sshd read ~/.ssh/authorized_keys too, as a
	// stock sshd does, besides the server's own file.
	HomeAuthorizedKeys bool
}

// Server is one running sshd.
type Server struct {
	Dir        string // its private directory
	Port       int
	Addr       string // 127.0.0.1:Port
	HostKey    ssh.PublicKey
	HostKeyPEM []byte
	ClientKey  string // path of a private key the server accepts
	ClientPub  string // its authorized_keys line
	KnownHosts string // a known_hosts file with this server's key
	LogFile    string
	// HostKeys are the server's host keys by type ("ed25519" is HostKey).
	HostKeys map[string]ssh.PublicKey
	cmd      *exec.Cmd
	exited   chan struct{}
	keyFiles map[string]string // type -> private key file
	served   []string          // types in sshd_config, in order
	config   string            // sshd_config without its HostKey lines
	osr      string            // file bind-mounted on /etc/os-release
	binds    map[string]string // mount point -> source, in sshd's namespace
}

// Need skips the test unless sshd exists and the test runs as root (sshd
// must switch users and read /etc/shadow).
func Need(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(SSHD); err != nil {
		t.Skipf("no OpenSSH server at %s (apt-get install openssh-server)", SSHD)
	}
	if os.Geteuid() != 0 {
		t.Skip("sshd tests need root (sshd switches to the login user)")
	}
}

// NewKey makes an ed25519 key pair: the private key in OpenSSH PEM form
// and the public key.
func NewKey(t testing.TB) ([]byte, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), sp
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs a new sshd and stops it when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Need(t)
	dir := t.TempDir()
	// sshd reads authorized_keys as the login user, who must be able to
	// reach it: open the temp dir and its parent for traversal.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Dir: dir, exited: make(chan struct{})}
	hostPEM := o.HostKey
	if hostPEM == nil {
		hostPEM, _ = NewKey(t)
	}
	hk, err := ssh.ParsePrivateKey(hostPEM)
	if err != nil {
		t.Fatalf("sshtest: host key: %v", err)
	}
	s.HostKey, s.HostKeyPEM = hk.PublicKey(), hostPEM
	write(t, filepath.Join(dir, "host_key"), hostPEM, 0o600)
	s.HostKeys = map[string]ssh.PublicKey{keyType(s.HostKey): s.HostKey}
	s.keyFiles = map[string]string{keyType(s.HostKey): filepath.Join(dir, "host_key")}
	s.served = []string{keyType(s.HostKey)}
	for _, typ := range o.HostKeyTypes {
		if _, ok := s.keyFiles[typ]; ok {
			continue
		}
		pemKey, pub := NewKeyOfType(t, typ)
		f := filepath.Join(dir, "host_key_"+typ)
		write(t, f, pemKey, 0o600)
		s.HostKeys[typ], s.keyFiles[typ] = pub, f
		s.served = append(s.served, typ)
	}
	s.binds = o.Binds
	if o.OSRelease != "" {
		s.osr = filepath.Join(dir, "os-release")
		write(t, s.osr, []byte(o.OSRelease), 0o644)
	}

	clientPEM, clientPub := NewKey(t)
	s.ClientKey = filepath.Join(dir, "client_key")
	write(t, s.ClientKey, clientPEM, 0o600)
	s.ClientPub = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(clientPub)))
	auth := append([]string{s.ClientPub}, o.AuthorizedKeys...)
	write(t, filepath.Join(dir, "authorized_keys"), []byte(strings.Join(auth, "\n")+"\n"), 0o644)

	s.Port = o.Port
	if s.Port == 0 {
		s.Port = FreePort(t)
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", s.Port)
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	write(t, s.KnownHosts, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, ssh.MarshalAuthorizedKey(s.HostKey))), 0o644)
	s.LogFile = filepath.Join(dir, "sshd.log")

	yesno := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	keysFiles := filepath.Join(dir, "authorized_keys")
	if o.HomeAuthorizedKeys {
		keysFiles += " .ssh/authorized_keys"
	}
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
PidFile none
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication %s
KbdInteractiveAuthentication no
UseDNS no
LogLevel VERBOSE
MaxStartups 100
`, s.Port, keysFiles, yesno(o.Password))
	if !o.NoSFTP {
		cfg += "Subsystem sftp internal-sftp\n"
	}
	cfg += o.ExtraConfig
	s.config = cfg
	s.writeConfig(t)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	logf, err := os.Create(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(SSHD, "-D", "-e", "-f", filepath.Join(s.Dir, "sshd_config"))
	if s.osr != "" || len(s.binds) > 0 {
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("no unshare (util-linux) to give sshd a mount namespace of its own")
		}
		// sh -c 'mount --bind SRC DST && ... && exec sshd ...' with every
		// path passed as an argument.
		script, args := "", []string{"sh"}
		bind := func(src, dst string) {
			n := len(args)
			script += fmt.Sprintf(`mount --bind "${%d}" "${%d}" && `, n, n+1)
			args = append(args, src, dst)
		}
		if s.osr != "" {
			bind(s.osr, "/etc/os-release")
		}
		for dst, src := range s.binds {
			bind(src, dst)
		}
		n := len(args)
		script += fmt.Sprintf(`exec "${%d}" -D -e -f "${%d}"`, n, n+1)
		args = append(args, SSHD, filepath.Join(s.Dir, "sshd_config"))
		cmd = exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshtest: start sshd: %v", err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(s.LogFile)
			t.Fatalf("sshtest: sshd exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.LogFile)
			t.Fatalf("sshtest: sshd not listening on %s after 10s:\n%s", s.Addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server (idempotent).
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// Restart stops the server and starts it again on the same port with the
// same config (for example after changing the host key file).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

// ReplaceHostKey gives the server a new host key and restarts it; the
// known_hosts file keeps the old one.
func (s *Server) ReplaceHostKey(t testing.TB) {
	t.Helper()
	pemKey, _ := NewKey(t)
	hk, err := ssh.ParsePrivateKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(s.Dir, "host_key"), pemKey, 0o600)
	s.HostKey, s.HostKeyPEM = hk.PublicKey(), pemKey
	s.HostKeys[keyType(hk.PublicKey())] = hk.PublicKey()
	s.Restart(t)
}

// ServeHostKeys restarts the server offering only the host keys of these
// types (of Options.HostKeyTypes and HostKey), in this order, as an
// installer whose sshd is configured for fewer types than the files it
// carries over.
func (s *Server) ServeHostKeys(t testing.TB, types ...string) {
	t.Helper()
	for _, typ := range types {
		if _, ok := s.keyFiles[typ]; !ok {
			t.Fatalf("sshtest: the server has no %s host key", typ)
		}
	}
	s.served = types
	s.Stop()
	s.writeConfig(t)
	s.start(t)
}

func (s *Server) writeConfig(t testing.TB) {
	t.Helper()
	var b strings.Builder
	b.WriteString(s.config)
	for _, typ := range s.served {
		fmt.Fprintf(&b, "HostKey %s\n", s.keyFiles[typ])
	}
	write(t, filepath.Join(s.Dir, "sshd_config"), []byte(b.String()), 0o644)
}

// keyType names a key's type as ssh-keygen -t does.
func keyType(k ssh.PublicKey) string {
	switch k.Type() {
	case ssh.KeyAlgoRSA:
		return "rsa"
	case ssh.KeyAlgoED25519:
		return "ed25519"
	}
	if strings.HasPrefix(k.Type(), "ecdsa-") {
		return "ecdsa"
	}
	return k.Type()
}

// NewKeyOfType makes a key pair of type "rsa" (2048 bits, quick to make),
// "ecdsa" (P-256) or "ed25519".
func NewKeyOfType(t testing.TB, typ string) ([]byte, ssh.PublicKey) {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch typ {
	case "ed25519":
		return NewKey(t)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		t.Fatalf("sshtest: unknown key type %q", typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), pub
}

// Log returns what sshd printed so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

func write(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// EnsureUser creates a local login user with a password (as root) unless it
// exists, and sets the password. With sudo, the user may run anything with
// sudo after giving that password; with nopasswd, without one.
func EnsureUser(t testing.TB, name, password string, sudo, nopasswd bool) *user.User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating a test user needs root")
	}
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v: %s", name, err, out)
		}
	}
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd %s: %v: %s", name, err, out)
	}
	sudoers := "/etc/sudoers.d/nixos-via-test-" + name
	if sudo {
		if _, err := exec.LookPath("sudo"); err != nil {
			t.Skip("no sudo (apt-get install sudo)")
		}
		rule := name + " ALL=(ALL:ALL) ALL\n"
		if nopasswd {
			rule = name + " ALL=(ALL:ALL) NOPASSWD: ALL\n"
		}
		write(t, sudoers, []byte(rule), 0o440)
	} else {
		os.Remove(sudoers)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Proxy is a TCP proxy on 127.0.0.1 in front of a server, so a test can cut
// every connection at once (a network failure, a host that went away).
type Proxy struct {
	Port   int
	Addr   string
	target string

	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	bytes  int64 // bytes forwarded towards the target
	closed bool

	// A link speed (SetRate): each direction is one shared link, like a
	// network between two machines; 0 is as fast as loopback.
	rate     float64
	linkFree [2]time.Time // when each direction's link is next idle
}

// SetRate limits each direction of the proxy, over all its connections
// together, to bytesPerSec (0: no limit), as a network link would.
func (p *Proxy) SetRate(bytesPerSec float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = bytesPerSec
}

// wait holds n bytes going in direction dir until the link has carried them.
func (p *Proxy) wait(dir, n int) {
	p.mu.Lock()
	if p.rate <= 0 {
		p.mu.Unlock()
		return
	}
	// A link that was idle may catch up by a few milliseconds (a burst):
	// sleeps overshoot, and without it every overshoot would be lost.
	now := time.Now()
	start := p.linkFree[dir]
	if earliest := now.Add(-linkBurst); start.Before(earliest) {
		start = earliest
	}
	p.linkFree[dir] = start.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	until := p.linkFree[dir]
	p.mu.Unlock()
	time.Sleep(time.Until(until))
}

// linkBurst is how far behind its schedule a rate-limited link may be.
const linkBurst = 20 * time.Millisecond

// linkWriter is a Proxy's link in one direction.
type linkWriter struct {
	p   *Proxy
	dir int
	w   io.Writer
}

func (l linkWriter) Write(b []byte) (int, error) {
	l.p.wait(l.dir, len(b))
	return l.w.Write(b)
}

// StartProxy forwards 127.0.0.1:<free port> to target until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, Port: ln.Addr().(*net.TCPAddr).Port}
	p.Addr = ln.Addr().String()
	go p.serve(ln)
	t.Cleanup(p.Close)
	return p
}

func (p *Proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		var toTarget, toClient io.Writer = u, c // plain: the kernel splices
		if p.rate > 0 {
			toTarget, toClient = linkWriter{p, 0, u}, linkWriter{p, 1, c}
		}
		p.mu.Unlock()
		go func() { n, _ := io.Copy(toTarget, c); p.add(n); u.Close() }()
		go func() { io.Copy(toClient, u); c.Close() }()
	}
}

func (p *Proxy) add(n int64) {
	p.mu.Lock()
	p.bytes += n
	p.mu.Unlock()
}

// BytesToTarget is how many bytes finished connections sent to the target.
func (p *Proxy) BytesToTarget() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// Cut closes every open connection; new connections are still accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Close stops listening and cuts every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.ln.Close()
	}
	p.mu.Unlock()
	p.Cut()
}

// StartWithTools starts an sshd whose sessions find the given scripts
// (name -> shell script body) first on their PATH, as an installer would
// have nixos-facter or nixos-generate-config.
func StartWithTools(t testing.TB, tools map[string]string) *Server {
	t.Helper()
	Need(t)
	bin := t.TempDir()
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range tools {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return Start(t, Options{ExtraConfig: "SetEnv PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin\n"})
}
