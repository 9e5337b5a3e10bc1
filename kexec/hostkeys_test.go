package kexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// A stock Debian/Ubuntu VPS has rsa, ecdsa and ed25519 host keys and Go's
// client negotiates ecdsa; the NixOS installer's sshd offers only rsa and
// ed25519 (its default services.openssh.hostKeys) although the ecdsa file
// is carried over. Reconnect must accept any key of the host's set, and
// refuse a key outside it naming both. It works the same through a
// ProxyCommand, which must follow the port to the installer's.
func TestReconnectAcceptsAnyKeyOfTheHostsSetAndRefusesAForeignOne(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proxy bool // reach the host through a ProxyCommand (nc)
	}{
		{"direct", false},
		{"through ProxyCommand", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{HostKeyTypes: []string{"rsa", "ecdsa", "ed25519"},
				OSRelease: "ID=nixos\nVARIANT_ID=installer\nPRETTY_NAME=\"NixOS (test installer)\"\n"})
			link := sshtest.StartProxy(t, s.Addr) // the network: cut when the host kexecs
			home := t.TempDir()
			kh := filepath.Join(home, "known_hosts")
			o := target.Options{Destination: "root@" + link.Addr, IdentityFiles: []string{s.ClientKey}, SSHConfigFile: "none",
				KnownHostsFiles: []string{kh}, ConnectTimeout: 5 * time.Second}
			var logf string
			if tc.proxy {
				if _, err := os.Stat("/bin/nc"); err != nil {
					t.Skip("no nc (apt-get install netcat-openbsd)")
				}
				logf = filepath.Join(t.TempDir(), "proxy.log")
				proxy := filepath.Join(t.TempDir(), "proxy")
				script := fmt.Sprintf("#!/bin/sh\necho \"$1 $2\" >> %s\nexec nc \"$1\" \"$2\"\n", logf)
				if err := os.WriteFile(proxy, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
				o.SSHOptions = []string{"ProxyCommand=" + proxy + " %h %p"}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := target.Dial(ctx, o, home)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got, want := c.HostKey().Type(), ssh.KeyAlgoECDSA256; got != want {
				t.Fatalf("first contact negotiated %s, want %s (the case of the issue)", got, want)
			}
			if _, err := c.ProbeFacts(ctx); err != nil {
				t.Fatal(err)
			}
			reconnect := func(old *target.Conn, kexec func()) (*target.Conn, *target.Facts, error) {
				done := make(chan struct{})
				go func() {
					defer close(done)
					time.Sleep(time.Second)
					// The installer's sshd is up before the old system's
					// connections drop, so that no reconnect can reach the
					// system before it (a real kexec leaves nothing of it).
					kexec()
					link.Cut()
				}()
				c, f, err := Reconnect(ctx, old, Options{DownTimeout: 20 * time.Second, UpTimeout: 20 * time.Second,
					Interval: 300 * time.Millisecond, Home: home, PostKexecPort: link.Port})
				<-done
				return c, f, err
			}

			// The installer offers rsa and ed25519 of the carried-over keys.
			inst, facts, err := reconnect(c, func() { s.ServeHostKeys(t, "rsa", "ed25519") })
			if err != nil {
				t.Fatalf("Reconnect to the installer offering rsa+ed25519: %v", err)
			}
			defer inst.Close()
			if got := inst.HostKey(); got.Type() != ssh.KeyAlgoED25519 || fp(got) != fp(s.HostKeys["ed25519"]) {
				t.Errorf("installer accepted with %s %s, want the host's ed25519 key %s", got.Type(), fp(got), fp(s.HostKeys["ed25519"]))
			}
			if !facts.IsInstaller {
				t.Errorf("facts after Reconnect: not an installer: %+v", facts)
			}

			// Another installer with a foreign ed25519 key only: refused,
			// and the error names the key seen and the host's set.
			set := inst.HostKeys()
			_, _, err = reconnect(inst, func() { s.ReplaceHostKey(t); s.ServeHostKeys(t, "ed25519") })
			var mm *target.HostKeyMismatchError
			if !errors.As(err, &mm) {
				t.Fatalf("Reconnect to a foreign key = %v, want a *target.HostKeyMismatchError (exit code 4)", err)
			}
			for _, want := range []string{fp(s.HostKey), fp(set[0]), "the host before kexec"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			for _, k := range set {
				if !strings.Contains(err.Error(), fp(k)) {
					t.Errorf("error %q does not name the set's %s %s", err, k.Type(), fp(k))
				}
			}
			if tc.proxy {
				// Every connection, the installer's too, went through the command.
				log, _ := os.ReadFile(logf)
				if got, want := strings.Count(string(log), fmt.Sprintf("127.0.0.1 %d\n", link.Port)), 3; got < want {
					t.Errorf("ProxyCommand ran %d times for port %d, want at least %d:\n%s", got, link.Port, want, log)
				}
			}
		})
	}
}

func fp(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }
