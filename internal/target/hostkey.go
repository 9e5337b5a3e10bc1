package target

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyMismatchError says the host presented a key other than the one we
// know for it. It is never retried.
type HostKeyMismatchError struct {
	Host     string   // as known_hosts names it, e.g. [127.0.0.1]:2222
	Got      string   // SHA256 fingerprint presented
	Want     []string // fingerprints known or pinned
	Source   string   // known_hosts file:line, or "--host-key"
	KeyTypes []string

	// noCommonType: the host has no key of the types asked for, so Got
	// names no key (dialOne then looks at the key it does have).
	noCommonType bool
}

func (e *HostKeyMismatchError) Error() string {
	msg := fmt.Sprintf("host key for %s changed: the host presented %s but %s has %s",
		e.Host, e.Got, e.Source, strings.Join(e.Want, ", "))
	if strings.Contains(e.Source, "known_hosts") || strings.Contains(e.Source, ":") {
		msg += fmt.Sprintf("; if the host was reinstalled, remove the old entry (ssh-keygen -R %q) and try again", e.Host)
	}
	return msg
}

// UnknownHostKeyError says the host is unknown and StrictHostKeyChecking=yes.
type UnknownHostKeyError struct {
	Host string
	Got  string
}

func (e *UnknownHostKeyError) Error() string {
	return fmt.Sprintf("host key for %s is unknown (%s) and StrictHostKeyChecking=yes", e.Host, e.Got)
}

// hostKeyChecker verifies host keys for one hop and records what it saw.
type hostKeyChecker struct {
	files   []string
	strict  string
	pins    []string        // accepted fingerprints
	pinned  []ssh.PublicKey // accepted keys
	source  string          // names the pins in errors
	replace bool            // accept any key and make it the only known one
	warn    func(string)

	mu   sync.Mutex
	seen ssh.PublicKey
	// viaKnownHosts: the key was checked against known_hosts or recorded
	// there, so the host's other keys may be recorded there too.
	viaKnownHosts bool
}

// knownKeyAlgorithms returns the host key algorithms known for addr in the
// known_hosts files, so the server is asked for a key type we can check
// (a host known by ed25519 must not be refused for offering ECDSA first).
func (h *hostKeyChecker) knownKeyAlgorithms(addr string) []string {
	cb, err := h.callback()
	if err != nil || cb == nil {
		return nil
	}
	// A key of a type that is never in known_hosts makes the callback list
	// every known key for the host in KeyError.Want.
	probe := probeKey()
	tcpAddr, _ := net.ResolveTCPAddr("tcp", addr)
	var remote net.Addr = tcpAddr
	if tcpAddr == nil {
		remote = &net.TCPAddr{IP: net.IPv4zero}
	}
	err = cb(addr, remote, probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	add := func(a ...string) {
		for _, x := range a {
			if !contains(algos, x) {
				algos = append(algos, x)
			}
		}
	}
	var keys []ssh.PublicKey
	for _, k := range ke.Want {
		keys = append(keys, k.Key)
	}
	add(algorithmsForKeys(keys)...)
	return algos
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// probeKey is a throwaway key used only to ask knownhosts which keys it has.
func probeKey() ssh.PublicKey {
	pub := ed25519.PublicKey(bytes.Repeat([]byte{0x42}, ed25519.PublicKeySize))
	k, _ := ssh.NewPublicKey(pub)
	return &renamedKey{PublicKey: k}
}

// renamedKey reports a key type that no known_hosts line has.
type renamedKey struct{ ssh.PublicKey }

func (renamedKey) Type() string { return "nixos-via-probe" }

func (h *hostKeyChecker) callback() (ssh.HostKeyCallback, error) {
	var existing []string
	for _, f := range h.files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	if len(existing) == 0 {
		return nil, nil
	}
	cb, err := knownhosts.New(existing...)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	return cb, nil
}

// Seen is the last host key the server presented (nil before a handshake).
func (h *hostKeyChecker) Seen() ssh.PublicKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen
}

func (h *hostKeyChecker) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h.mu.Lock()
	h.seen, h.viaKnownHosts = key, false
	h.mu.Unlock()
	return h.verify(hostname, remote, key)
}

// recordsKnownHosts says the last key was checked against known_hosts or
// recorded there.
func (h *hostKeyChecker) recordsKnownHosts() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.viaKnownHosts
}

func (h *hostKeyChecker) knownHostsOK() {
	h.mu.Lock()
	h.viaKnownHosts = true
	h.mu.Unlock()
}

func (h *hostKeyChecker) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	got := ssh.FingerprintSHA256(key)
	host := knownhosts.Normalize(hostname)
	if h.replace {
		if err := replaceKnownHost(h.files[0], hostname, remote, key); err != nil {
			return err
		}
		if h.warn != nil {
			h.warn(fmt.Sprintf("recorded the new host key of %s (%s %s) in %s, replacing the old one", host, key.Type(), got, h.files[0]))
		}
		h.knownHostsOK()
		return nil
	}
	if len(h.pinned) > 0 {
		if !keyIn(h.pinned, key) {
			return &HostKeyMismatchError{Host: host, Got: got, Want: fingerprints(h.pinned), Source: h.source, KeyTypes: []string{key.Type()}}
		}
		return nil
	}
	if len(h.pins) > 0 {
		if !slices.Contains(h.pins, got) {
			return &HostKeyMismatchError{Host: host, Got: got, Want: h.pins, Source: h.source, KeyTypes: []string{key.Type()}}
		}
		return nil
	}
	if h.strict == StrictNo {
		if h.warn != nil {
			h.warn(fmt.Sprintf("WARNING: host key checking is off (StrictHostKeyChecking=no): accepting %s %s for %s without verification", key.Type(), got, host))
		}
		return nil
	}
	cb, err := h.callback()
	if err != nil {
		return err
	}
	if cb != nil {
		err = cb(hostname, remote, key)
		if err == nil {
			h.knownHostsOK()
			return nil
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return err
		}
		if len(ke.Want) > 0 {
			// Known with another key of the same type, or only with other
			// types (we asked for those types, so the server changed).
			e := &HostKeyMismatchError{Host: host, Got: got}
			for _, w := range ke.Want {
				e.Want = append(e.Want, ssh.FingerprintSHA256(w.Key))
				e.KeyTypes = append(e.KeyTypes, w.Key.Type())
				if e.Source == "" {
					e.Source = fmt.Sprintf("%s:%d", w.Filename, w.Line)
				}
			}
			return e
		}
	}
	if h.strict == StrictYes {
		return &UnknownHostKeyError{Host: host, Got: got}
	}
	// accept-new: record the key in the first known_hosts file.
	if err := appendKnownHost(h.files[0], hostname, remote, key); err != nil {
		return err
	}
	if h.warn != nil {
		h.warn(fmt.Sprintf("Permanently added %s (%s %s) to %s", host, key.Type(), got, h.files[0]))
	}
	h.knownHostsOK()
	return nil
}

func appendKnownHost(file, hostname string, remote net.Addr, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key)
	if _, err := fmt.Fprintln(f, line); err != nil {
		f.Close()
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	return nil
}

// replaceKnownHost drops every line of file that names hostname (plain or
// hashed) and appends the new key.
func replaceKnownHost(file, hostname string, remote net.Addr, key ssh.PublicKey) error {
	for range 100 {
		line, err := knownLine(file, hostname, remote)
		if err != nil {
			return err
		}
		if line == 0 {
			break
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("record host key: %w", err)
		}
		lines := strings.Split(string(data), "\n")
		lines = append(lines[:line-1], lines[line:]...)
		if err := writeFileAtomic(file, []byte(strings.Join(lines, "\n"))); err != nil {
			return err
		}
	}
	return appendKnownHost(file, hostname, remote, key)
}

// knownLine is the number of a line of file that has a key for hostname, or 0.
func knownLine(file, hostname string, remote net.Addr) (int, error) {
	if _, err := os.Stat(file); os.IsNotExist(err) {
		return 0, nil
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return 0, fmt.Errorf("read known_hosts: %w", err)
	}
	var ke *knownhosts.KeyError
	if err := cb(hostname, remote, probeKey()); errors.As(err, &ke) {
		for _, w := range ke.Want {
			return w.Line, nil
		}
	}
	return 0, nil
}

func writeFileAtomic(file string, data []byte) error {
	tmp := file + ".nixos-via.tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	return nil
}
