package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/nixos-via/nixos-via/internal/target"
)

// presentedKey connects to m as root asking only for algo and returns the
// key the host shows (host key checking off: this only looks).
func presentedKey(t *testing.T, ctx context.Context, w *world, m *machine, algo string) (ssh.PublicKey, error) {
	t.Helper()
	c, err := target.Dial(ctx, target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", m.port), IdentityFiles: []string{w.keys.ClientKeyFile},
		KnownHostsFiles: []string{t.TempDir() + "/kh"}, StrictHostKeyChecking: target.StrictNo, SSHConfigFile: "none",
		SSHOptions: []string{"HostKeyAlgorithms=" + algo}, ConnectTimeout: 20 * time.Second}, t.TempDir())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.HostKey(), nil
}

// TestKexecIntoAnInstallerOfferingFewerKeyTypes: the provider has rsa,
// ecdsa and ed25519 host keys, as a stock Debian VPS, and a first contact
// (empty known_hosts) negotiates ecdsa; the installer's sshd offers only
// rsa and ed25519 of the keys it carried over (NixOS's default
// services.openssh.hostKeys). `--phases kexec` must accept the installer,
// and known_hosts must hold the host's set, so that a re-run that finds the
// installer is accepted too.
func TestKexecIntoAnInstallerOfferingFewerKeyTypes(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	m := w.boot(t, "kexec-key-types", 0, 512)
	algos := map[string]string{"ssh-ed25519": ssh.KeyAlgoED25519, "ecdsa-sha2-nistp256": ssh.KeyAlgoECDSA256, "rsa-sha2-512": ssh.KeyAlgoRSA}
	provider := map[string]string{} // key type -> fingerprint
	if err := m.v.ExpectString(ctx, "[init] sshd started"); err != nil {
		t.Fatal(err)
	}
	for algo, typ := range algos {
		k, err := presentedKey(t, ctx, w, m, algo)
		if err != nil {
			t.Fatalf("the provider shows no %s key: %v\n--- console ---\n%s", algo, err, m.v.ConsoleTail(20))
		}
		if k.Type() != typ {
			t.Fatalf("asked for %s, the provider showed %s", algo, k.Type())
		}
		provider[typ] = ssh.FingerprintSHA256(k)
	}
	if err := os.WriteFile(m.knownHosts, nil, 0o600); err != nil { // a first contact
		t.Fatal(err)
	}

	start := time.Now()
	out := mustSucceed(t, ctx, m, "kexec", nil, w.kexecArgs(m, "root")...)
	t.Logf("kexec phase: %s", time.Since(start).Round(time.Second))
	if want := "(" + ssh.KeyAlgoECDSA256 + " " + provider[ssh.KeyAlgoECDSA256] + ")"; !strings.Contains(out, want) {
		t.Errorf("the first contact did not record the ecdsa key %s (the case of the issue):\n%s", want, out)
	}

	// known_hosts holds the set.
	cb, err := knownhosts.New(m.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	probe, _, _, _, _ := ssh.ParseAuthorizedKey([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBn2lI6F8CdTqYHrPu1Vz5Eb5W6B4sXOZ8o8r9kWk6bX"))
	got := map[string]string{}
	var ke *knownhosts.KeyError
	if err := cb(fmt.Sprintf("127.0.0.1:%d", m.port), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: m.port}, probe); errors.As(err, &ke) {
		for _, k := range ke.Want {
			got[k.Key.Type()] = ssh.FingerprintSHA256(k.Key)
		}
	}
	for typ, want := range provider {
		if got[typ] != want {
			kh, _ := os.ReadFile(m.knownHosts)
			t.Errorf("known_hosts has %s %q for the host, want %q:\n%s", typ, got[typ], want, kh)
		}
	}

	// The installer offers rsa and ed25519, the host's own, and no ecdsa.
	for _, tc := range []struct {
		algo string
		want string // fingerprint; "" when it must offer none
	}{
		{"ssh-ed25519", provider[ssh.KeyAlgoED25519]},
		{"rsa-sha2-512", provider[ssh.KeyAlgoRSA]},
		{"ecdsa-sha2-nistp256", ""},
	} {
		k, err := presentedKey(t, ctx, w, m, tc.algo)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("the installer offers an %s key (%s), want none", tc.algo, ssh.FingerprintSHA256(k))
		case tc.want != "" && err != nil:
			t.Errorf("the installer offers no %s key: %v", tc.algo, err)
		case tc.want != "" && ssh.FingerprintSHA256(k) != tc.want:
			t.Errorf("the installer's %s key is %s, want the host's %s", tc.algo, ssh.FingerprintSHA256(k), tc.want)
		}
	}
	// A re-run (strict known_hosts) finds the installer and accepts it.
	if f := factsOf(t, ctx, w, m); !f.IsInstaller {
		t.Errorf("after kexec: not an installer: %s", f.OSName)
	}
}
