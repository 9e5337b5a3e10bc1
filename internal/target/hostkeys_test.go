package target_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// debianLike is a server with the three host key types a stock Debian or
// Ubuntu VPS has.
func debianLike(t *testing.T) *sshtest.Server {
	return sshtest.Start(t, sshtest.Options{HostKeyTypes: []string{"rsa", "ecdsa", "ed25519"}})
}

// knownKeys lists the keys file has for the server, by type.
func knownKeys(t *testing.T, file string, s *sshtest.Server) map[string]string {
	t.Helper()
	cb, err := knownhosts.New(file)
	if err != nil {
		t.Fatal(err)
	}
	probe, _ := sshtest.NewKeyOfType(t, "ecdsa")
	signer, _ := ssh.ParsePrivateKey(probe)
	got := map[string]string{}
	var ke *knownhosts.KeyError
	if err := cb(s.Addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.Port}, signer.PublicKey()); errors.As(err, &ke) {
		for _, w := range ke.Want {
			got[w.Key.Type()] = ssh.FingerprintSHA256(w.Key)
		}
	}
	return got
}

func fp(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// A first contact records the host's whole key set (the key it presented
// and the others its sshd announced), so that a re-run that finds the host
// in an installer offering fewer types still knows it.
func TestFirstContactRecordsTheKeySetAndARerunOnFewerTypesIsAccepted(t *testing.T) {
	s := debianLike(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	o := opts(s)
	o.KnownHostsFiles = []string{kh}
	c := dial(t, o)
	if _, err := c.ProbeFacts(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	got := knownKeys(t, kh, s)
	want := map[string]string{}
	for _, k := range s.HostKeys {
		want[k.Type()] = fp(k)
	}
	for typ, w := range want {
		if got[typ] != w {
			t.Errorf("known_hosts has %s %q for the host, want %q (all: %v)", typ, got[typ], w, got)
		}
	}

	// The installer's sshd offers only rsa and ed25519 (NixOS's default
	// services.openssh.hostKeys) from the carried-over files.
	s.ServeHostKeys(t, "rsa", "ed25519")
	o.StrictHostKeyChecking = target.StrictYes
	c = dial(t, o)
	if typ := c.HostKey().Type(); typ != ssh.KeyAlgoRSA && typ != ssh.KeyAlgoED25519 {
		t.Errorf("re-run negotiated %s, want rsa or ed25519", typ)
	}
}

func TestHostKeysHoldsTheAnnouncedSet(t *testing.T) {
	s := debianLike(t)
	o := opts(s)
	o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "known_hosts")}
	c := dial(t, o)
	for typ, k := range s.HostKeys {
		found := false
		for _, h := range c.HostKeys() {
			found = found || fp(h) == fp(k)
		}
		if !found {
			t.Errorf("HostKeys() lacks the %s key %s", typ, fp(k))
		}
	}
	if got, want := fp(c.HostKeys()[0]), fp(c.HostKey()); got != want {
		t.Errorf("HostKeys()[0] = %s, want the presented key %s", got, want)
	}
}

// --host-key may be given more than once: a key matching any pin is
// accepted, and a refusal names the presented key and every pin.
func TestSeveralHostKeyPins(t *testing.T) {
	s := debianLike(t)
	bogus := "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for _, tc := range []struct {
		name    string
		pins    []string
		want    string // key type negotiated; "" for a refusal
		algoOpt string
	}{
		{"ed25519 and ecdsa pinned", []string{fp(s.HostKeys["ed25519"]), fp(s.HostKeys["ecdsa"])}, ssh.KeyAlgoED25519, ""},
		{"a wrong pin and the rsa key", []string{bogus, fp(s.HostKeys["rsa"])}, ssh.KeyAlgoRSA, ""},
		{"ecdsa pinned, HostKeyAlgorithms says ecdsa", []string{fp(s.HostKeys["ecdsa"]), fp(s.HostKeys["rsa"])}, ssh.KeyAlgoECDSA256, "HostKeyAlgorithms=ecdsa-sha2-nistp256"},
		{"no pin matches", []string{bogus, "SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts(s)
			o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "none")}
			o.HostKeyPins = tc.pins
			if tc.algoOpt != "" {
				o.SSHOptions = []string{tc.algoOpt}
			}
			c, err := target.Dial(ctxT(t, 30*time.Second), o, t.TempDir())
			if tc.want == "" {
				var mm *target.HostKeyMismatchError
				if !errors.As(err, &mm) {
					t.Fatalf("Dial = %v, want *HostKeyMismatchError", err)
				}
				for _, w := range append(tc.pins, fp(s.HostKeys["ed25519"])) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if got := c.HostKey().Type(); got != tc.want {
				t.Errorf("negotiated %s, want %s", got, tc.want)
			}
			if _, err := os.Stat(o.KnownHostsFiles[0]); err == nil {
				t.Errorf("a pinned connection wrote known_hosts")
			}
		})
	}
}

// -o HostKeyAlgorithms is honoured: it decides which key the host shows.
// Without it Go's client would ask for ECDSA first.
func TestHostKeyAlgorithmsOption(t *testing.T) {
	s := debianLike(t)
	for _, tc := range []struct {
		opt  string
		want string
	}{
		{"", ssh.KeyAlgoECDSA256},
		{"HostKeyAlgorithms=ssh-ed25519", ssh.KeyAlgoED25519},
		{"HostKeyAlgorithms rsa-sha2-512,ssh-ed25519", ssh.KeyAlgoRSA},
		{"HostKeyAlgorithms=^ssh-ed25519", ssh.KeyAlgoED25519},
		{"HostKeyAlgorithms=-ecdsa-sha2-*", ssh.KeyAlgoRSA},
	} {
		t.Run(tc.opt, func(t *testing.T) {
			o := opts(s)
			o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "known_hosts")}
			if tc.opt != "" {
				o.SSHOptions = []string{tc.opt}
			}
			c := dial(t, o)
			if got := c.HostKey().Type(); got != tc.want {
				t.Errorf("negotiated host key %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseHostKeyAlgorithms(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // first algorithms, comma separated
		wantErr string
	}{
		{"ssh-ed25519", "ssh-ed25519", ""},
		{"ssh-ed25519,rsa-sha2-512", "ssh-ed25519,rsa-sha2-512", ""},
		{"^rsa-sha2-256", "rsa-sha2-256", ""},
		{"ecdsa-sha2-nistp???", "ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521", ""},
		{"ssh-ed448", "", "unknown algorithm"},
		{"ssh-ed25519,,", "", "empty name"},
	} {
		got, err := target.ParseHostKeyAlgorithms(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseHostKeyAlgorithms(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		n := len(strings.Split(tc.want, ","))
		if err != nil || len(got) < n || strings.Join(got[:n], ",") != tc.want {
			t.Errorf("ParseHostKeyAlgorithms(%q) = %v, %v; want it to start with %s", tc.in, got, err, tc.want)
		}
	}
	minus, err := target.ParseHostKeyAlgorithms("-ssh-ed25519")
	if err != nil || len(minus) == 0 {
		t.Fatalf("-ssh-ed25519: %v %v", minus, err)
	}
	for _, a := range minus {
		if a == ssh.KeyAlgoED25519 {
			t.Errorf("-ssh-ed25519 kept ssh-ed25519: %v", minus)
		}
	}
}

// ProxyCommand runs a real command and speaks SSH over its stdio, with
// %h %p %r expanded; the proxy's log proves the connection went through it.
func TestProxyCommandThroughARealCommand(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	dir := t.TempDir()
	// A small proxy: it logs its arguments, then relays stdio to host:port.
	logf := filepath.Join(dir, "proxy.log")
	proxy := filepath.Join(dir, "proxy")
	relay := relayCommand(t)
	script := fmt.Sprintf("#!/bin/sh\necho \"$@\" >> %s\n%s\n", logf, relay)
	if err := os.WriteFile(proxy, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cmd     string
		wantLog string
		wantErr string
	}{
		{"tokens expanded", proxy + " %h %p %r 100%%", fmt.Sprintf("127.0.0.1 %d root 100%%", s.Port), ""},
		{"a command that fails says why", "sh -c 'echo no route to the bastion >&2; exit 3'", "", "no route to the bastion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(logf)
			o := opts(s)
			o.SSHOptions = []string{"ProxyCommand " + tc.cmd}
			var warnings []string
			o.Warn = func(m string) { warnings = append(warnings, m) }
			c, err := target.Dial(ctxT(t, 30*time.Second), o, t.TempDir())
			if tc.wantErr != "" {
				var ce *target.ConnectError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Dial = %v, want a *ConnectError saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if got, want := output(t, c, "echo $SSH_CONNECTION | cut -d' ' -f3"), "127.0.0.1"; got != want {
				t.Errorf("remote sees the connection from %q, want %q", got, want)
			}
			if got := strings.TrimSpace(string(readFile(t, logf))); got != tc.wantLog {
				t.Errorf("proxy was run with %q, want %q", got, tc.wantLog)
			}
		})
	}
}

// relayCommand is a command that relays stdio to $1:$2: nc or socat.
func relayCommand(t *testing.T) string {
	for _, c := range []struct{ bin, line string }{
		{"nc", `exec nc "$1" "$2"`},
		{"socat", `exec socat - "TCP:$1:$2"`},
	} {
		if _, err := os.Stat("/usr/bin/" + c.bin); err == nil {
			return c.line
		}
		if _, err := os.Stat("/bin/" + c.bin); err == nil {
			return c.line
		}
	}
	t.Skip("neither nc nor socat (apt-get install netcat-openbsd)")
	return ""
}

// The reboot phase copies the installer's Resolved, which carries the
// host's key set as pins, and asks to replace the known key with the new
// system's: the pins must not refuse the new key.
func TestReplaceKnownHostIgnoresPinsLeftFromTheInstaller(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	_, old := sshtest.NewKey(t)
	o := opts(s)
	o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "known_hosts")}
	o.PinnedKeys, o.PinSource = []ssh.PublicKey{old}, "the host before kexec"
	o.HostKeyPins = []string{fp(old)}
	o.ReplaceKnownHost = true
	c := dial(t, o)
	if got, want := fp(c.HostKey()), fp(s.HostKey); got != want {
		t.Errorf("connected with %s, want the new key %s", got, want)
	}
}
