package target

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeysRequest is the global request in which OpenSSH's sshd announces
// all its host public keys after authentication (OpenSSH's PROTOCOL,
// "hostkeys-00@openssh.com"). The announcement is trusted as far as the
// key the connection was verified with: it comes over that connection.
const hostKeysRequest = "hostkeys-00@openssh.com"

// ParseHostKeyAlgorithms reads an OpenSSH HostKeyAlgorithms value: a comma
// separated list of algorithm names (patterns with * and ? allowed), or one
// that starts with "+" (appended to the defaults), "-" (removed from them)
// or "^" (put in front of them).
func ParseHostKeyAlgorithms(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, fmt.Errorf("HostKeyAlgorithms: empty list")
	}
	defaults := ssh.SupportedAlgorithms().HostKeys
	known := append(slices.Clone(defaults), ssh.InsecureAlgorithms().HostKeys...)
	op := v[0]
	if op == '+' || op == '-' || op == '^' {
		v = v[1:]
	}
	var named []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("HostKeyAlgorithms %q: empty name in the list", v)
		}
		n := 0
		for _, a := range known {
			if ok, _ := path.Match(item, a); ok && !slices.Contains(named, a) {
				named = append(named, a)
				n++
			}
		}
		if n == 0 && !slices.Contains(named, item) {
			return nil, fmt.Errorf("HostKeyAlgorithms: unknown algorithm %q (known: %s)", item, strings.Join(known, ","))
		}
	}
	switch op {
	case '+':
		out := slices.Clone(defaults)
		for _, a := range named {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
		return out, nil
	case '-':
		return slices.DeleteFunc(slices.Clone(defaults), func(a string) bool { return slices.Contains(named, a) }), nil
	case '^':
		out := named
		for _, a := range defaults {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
		return out, nil
	}
	return named, nil
}

// algoRank orders host key algorithms as we prefer them when we choose:
// ed25519, then ECDSA, then RSA with SHA-2, then the rest.
func algoRank(a string) int {
	switch a {
	case ssh.KeyAlgoED25519:
		return 0
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return 1
	case ssh.KeyAlgoRSASHA512:
		return 2
	case ssh.KeyAlgoRSASHA256:
		return 3
	case ssh.KeyAlgoRSA:
		return 4
	}
	return 5
}

// algorithmsForKeys lists the host key algorithms that show one of keys,
// in our order of preference.
func algorithmsForKeys(keys []ssh.PublicKey) []string {
	var algos []string
	for _, k := range keys {
		for _, a := range algorithmsFor(k.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	sort.SliceStable(algos, func(i, j int) bool { return algoRank(algos[i]) < algoRank(algos[j]) })
	return algos
}

// restrictAlgorithms keeps the algorithms of want that the user allows, in
// the user's order; with no user list, want as it is. When nothing is left
// the user's list is returned: the handshake then fails and says why.
func restrictAlgorithms(user, want []string) []string {
	if len(user) == 0 {
		return want
	}
	var out []string
	for _, a := range user {
		if slices.Contains(want, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return user
	}
	return out
}

func sameKey(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

func keyIn(keys []ssh.PublicKey, k ssh.PublicKey) bool {
	return slices.ContainsFunc(keys, func(x ssh.PublicKey) bool { return sameKey(x, k) })
}

func fingerprints(keys []ssh.PublicKey) []string {
	var fps []string
	for _, k := range keys {
		fps = append(fps, ssh.FingerprintSHA256(k))
	}
	return fps
}

// hostKeySet is what one connection learns of its host's public keys: the
// key the host presented, the keys its sshd announced, and those read from
// its /etc/ssh (AddHostKeys). When the presented key was checked against
// known_hosts (or recorded there as a first contact), the other keys are
// recorded there too, one a key type the file has not got for the host:
// a later connection, perhaps to the installer the host was kexec'd into,
// may present any of them.
type hostKeySet struct {
	hostname string // as dialled (host:port)
	remote   net.Addr
	record   string // known_hosts file to record in; "" records nothing
	warn     func(string)

	client *ssh.Client
	synced sync.Once

	mu   sync.Mutex
	keys []ssh.PublicKey
	reqs <-chan *ssh.Request // the connection's global requests, until served
}

// serve passes the connection's global requests on to out, taking the
// host key announcements out of the stream.
func (s *hostKeySet) serve(reqs <-chan *ssh.Request, out chan<- *ssh.Request) {
	defer close(out)
	for r := range reqs {
		if r.Type != hostKeysRequest {
			out <- r
			continue
		}
		s.mu.Lock()
		keys := parseHostKeysPayload(r.Payload)
		s.addLocked(keys)
		s.mu.Unlock()
		if r.WantReply {
			r.Reply(false, nil)
		}
	}
}

// parseHostKeysPayload reads the announcement: one SSH string (a public
// key blob) after another. Keys of types we cannot parse are skipped.
func parseHostKeysPayload(p []byte) []ssh.PublicKey {
	var keys []ssh.PublicKey
	for len(p) >= 4 {
		n := int(p[0])<<24 | int(p[1])<<16 | int(p[2])<<8 | int(p[3])
		if n < 0 || n > len(p)-4 {
			break
		}
		if k, err := ssh.ParsePublicKey(p[4 : 4+n]); err == nil {
			keys = append(keys, k)
		}
		p = p[4+n:]
	}
	return keys
}

// settle waits (briefly) until the host's announcement is served. sshd
// sends it right after authentication, so it is ahead of the answer to
// any request sent after that: the first call asks for one keepalive.
func (s *hostKeySet) settle() {
	if s.reqs == nil {
		return
	}
	s.synced.Do(func() {
		if s.client == nil {
			return
		}
		done := make(chan struct{})
		go func() {
			s.client.SendRequest("keepalive@openssh.com", true, nil)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	for deadline := time.Now().Add(time.Second); len(s.reqs) > 0 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
}

// list returns the set, the presented key first.
func (s *hostKeySet) list() []ssh.PublicKey {
	s.settle()
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys)
}

func (s *hostKeySet) add(keys []ssh.PublicKey) {
	s.settle()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(keys)
}

func (s *hostKeySet) addLocked(keys []ssh.PublicKey) {
	var fresh []ssh.PublicKey
	for _, k := range keys {
		if !keyIn(s.keys, k) {
			s.keys = append(s.keys, k)
			fresh = append(fresh, k)
		}
	}
	if s.record == "" || len(fresh) == 0 {
		return
	}
	recorded, err := recordOtherTypes(s.record, s.hostname, s.remote, fresh)
	if s.warn == nil {
		return
	}
	if err != nil {
		s.warn(fmt.Sprintf("could not record the other host keys of %s: %v", knownhosts.Normalize(s.hostname), err))
	} else if len(recorded) > 0 {
		var names []string
		for _, k := range recorded {
			names = append(names, k.Type()+" "+ssh.FingerprintSHA256(k))
		}
		s.warn(fmt.Sprintf("Added the host's other keys for %s (%s) to %s", knownhosts.Normalize(s.hostname), strings.Join(names, ", "), s.record))
	}
}

// recordOtherTypes appends to file each key whose type file does not have
// for hostname yet. A key of a type it has is left out: the known key of
// that type still decides (a host whose key changed is refused, not
// silently trusted with both).
func recordOtherTypes(file, hostname string, remote net.Addr, keys []ssh.PublicKey) ([]ssh.PublicKey, error) {
	known, err := knownKeysFor(file, hostname, remote)
	if err != nil {
		return nil, err
	}
	var recorded []ssh.PublicKey
	for _, k := range keys {
		if slices.ContainsFunc(known, func(x ssh.PublicKey) bool { return x.Type() == k.Type() }) {
			continue
		}
		if err := appendKnownHost(file, hostname, remote, k); err != nil {
			return recorded, err
		}
		known = append(known, k)
		recorded = append(recorded, k)
	}
	return recorded, nil
}

// knownKeysFor lists the keys file has for hostname (none when it does
// not exist).
func knownKeysFor(file, hostname string, remote net.Addr) ([]ssh.PublicKey, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	var ke *knownhosts.KeyError
	var keys []ssh.PublicKey
	if err := cb(hostname, remote, probeKey()); errors.As(err, &ke) {
		for _, w := range ke.Want {
			keys = append(keys, w.Key)
		}
	}
	return keys, nil
}
