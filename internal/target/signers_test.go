package target_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestInMemorySigners: a key held only in memory (Options.Signers) logs
// in where the host authorizes it and nothing else is given, is offered
// first, and a key the host does not know is refused like any other.
func TestInMemorySigners(t *testing.T) {
	known, unknown := newSigner(t), newSigner(t)
	s := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []string{string(ssh.MarshalAuthorizedKey(known.PublicKey()))}})
	for _, tc := range []struct {
		name     string
		signers  []ssh.Signer
		identity bool
		wantOK   bool
	}{
		{"known key alone", []ssh.Signer{known}, false, true},
		{"unknown key alone", []ssh.Signer{unknown}, false, false},
		{"unknown key, then an identity file", []ssh.Signer{unknown}, true, true},
		{"no credentials at all", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts(s)
			o.IdentityFiles = nil
			if tc.identity {
				o.IdentityFiles = []string{s.ClientKey}
			}
			o.Signers = tc.signers
			c, err := target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
			if got := err == nil; got != tc.wantOK {
				t.Fatalf("Dial ok = %v (%v), want %v", got, err, tc.wantOK)
			}
			if err != nil {
				var ae *target.AuthError
				if len(tc.signers) > 0 && !errors.As(err, &ae) {
					t.Errorf("Dial: %v, want an AuthError", err)
				}
				return
			}
			defer c.Close()
			if got := output(t, c, "id -u"); got != "0" {
				t.Errorf("id -u = %q, want 0", got)
			}
			got := c.OfferedKeys()
			if len(got) == 0 || !bytes.Equal(got[0].Marshal(), tc.signers[0].PublicKey().Marshal()) {
				t.Errorf("OfferedKeys()[0] is not the in-memory key (%d keys offered)", len(got))
			}
			if want := len(tc.signers) + len(o.IdentityFiles); len(got) != want {
				t.Errorf("%d keys offered, want %d", len(got), want)
			}
		})
	}
}

// TestInMemorySignerIsNotInAuthErrors: the tried list names the in-memory
// key by count only.
func TestInMemorySignerIsNotInAuthErrors(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	o := opts(s)
	o.IdentityFiles = nil
	signer := newSigner(t)
	o.Signers = []ssh.Signer{signer}
	_, err := target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
	var ae *target.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("Dial: %v, want an AuthError", err)
	}
	if got, want := strings.Join(ae.Tried, ", "), "1 in-memory key(s)"; got != want {
		t.Errorf("tried %q, want %q", got, want)
	}
	pub := string(ssh.MarshalAuthorizedKey(signer.PublicKey()))
	if strings.Contains(err.Error(), strings.Fields(pub)[1]) {
		t.Errorf("the error shows the key: %v", err)
	}
}
