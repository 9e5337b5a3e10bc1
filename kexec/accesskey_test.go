package kexec

import (
	"crypto/dsa"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// TestEnsureAccessKey logs into a real sshd whose sessions see a /root and
// a sudo user's home of the test's own (bind mounts), and checks that the
// throwaway key is added only when none of the keys we offer is in the
// files kexec/run carries, lands in the login user's and root's
// authorized_keys with modes 0700/0600 (owned by that user), keeps what
// was there, logs in by itself, and is removed again by Remove; a failed
// add takes out what it added.
func TestEnsureAccessKey(t *testing.T) {
	sshtest.Need(t)
	const userName, password = "nvkeyuser", "nv-key-test-pw"
	u := sshtest.EnsureUser(t, userName, password, true, true)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if u.HomeDir == "" || u.HomeDir == "/" {
		t.Fatalf("user %s has no home of its own (%q)", userName, u.HomeDir)
	}

	// One server: the client key logs in through the server's own file
	// (like AuthorizedKeysCommand), and ~/.ssh/authorized_keys is read too.
	rootDir, homeDir := t.TempDir(), t.TempDir()
	s := sshtest.Start(t, sshtest.Options{Password: true, HomeAuthorizedKeys: true,
		Binds: map[string]string{"/root": rootDir, u.HomeDir: homeDir}})
	clientPub := s.ClientPub

	type file struct {
		path string // in the sessions' view: /root/... or ~user/...
		data string
	}
	for _, tc := range []struct {
		name      string
		user      string // login user
		password  bool   // log in with the password only (no key at all)
		files     []file // present before
		wantAdded []string
		// breakRoot makes root's authorized_keys a directory, so adding
		// to it fails after the user's file got the line.
		breakRoot bool
	}{
		{name: "root whose key is in root's file", user: "root",
			files: []file{{"/root/.ssh/authorized_keys", clientPub + "\n"}}},
		{name: "root whose key is in root's file behind options", user: "root",
			files: []file{{"/root/.ssh/authorized_keys", `no-port-forwarding,command="echo 'Please login as the user \"admin\"'" ` + clientPub + "\n"}}},
		{name: "root whose key is in authorized_keys2", user: "root",
			files: []file{{"/root/.ssh/authorized_keys2", clientPub + "\n"}}},
		{name: "root whose key the files lack (AuthorizedKeysCommand)", user: "root",
			files:     []file{{"/root/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ0Ct9bSrq1hKeHbyOFTCeAHQnpVaXFzi9FhX1xRTwb other"}},
			wantAdded: []string{"/root/.ssh/authorized_keys"}},
		{name: "sudo user whose key is in its own file", user: userName,
			files: []file{{"~/.ssh/authorized_keys", clientPub + "\n"}}},
		{name: "sudo user whose key is only in root's file", user: userName,
			files: []file{{"/root/.ssh/authorized_keys", clientPub + "\n"}}},
		{name: "sudo user whose key the files lack", user: userName,
			wantAdded: []string{"~/.ssh/authorized_keys", "/root/.ssh/authorized_keys"}},
		{name: "sudo user with a password only", user: userName, password: true,
			files:     []file{{"~/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ0Ct9bSrq1hKeHbyOFTCeAHQnpVaXFzi9FhX1xRTwb other\n"}},
			wantAdded: []string{"~/.ssh/authorized_keys", "/root/.ssh/authorized_keys"}},
		{name: "sudo user, root's file cannot be written", user: userName, password: true, breakRoot: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Fresh views of /root and the user's home for each case.
			for _, d := range []string{rootDir, homeDir} {
				if err := os.RemoveAll(filepath.Join(d, ".ssh")); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chown(homeDir, uid, gid); err != nil {
				t.Fatal(err)
			}
			local := func(p string) string {
				if rest, ok := strings.CutPrefix(p, "~/"); ok {
					return filepath.Join(homeDir, rest)
				}
				return filepath.Join(rootDir, strings.TrimPrefix(p, "/root/"))
			}
			for _, f := range tc.files {
				p := local(f.path)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := filepath.Walk(homeDir, func(p string, _ os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				return os.Chown(p, uid, gid)
			}); err != nil {
				t.Fatal(err)
			}
			if tc.breakRoot {
				if err := os.MkdirAll(local("/root/.ssh/authorized_keys"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			before := map[string]string{}
			for _, f := range tc.files {
				before[f.path] = f.data
			}

			o := target.Options{Destination: fmt.Sprintf("%s@127.0.0.1:%d", tc.user, s.Port),
				IdentityFiles: []string{s.ClientKey}, KnownHostsFiles: []string{s.KnownHosts},
				SSHConfigFile: "none", ConnectTimeout: 5 * time.Second}
			if tc.password {
				o.IdentityFiles, o.Password = nil, password
			}
			ctx := t.Context()
			conn, err := target.Dial(ctx, o, t.TempDir())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer conn.Close()
			facts := &target.Facts{User: tc.user, IsRoot: tc.user == "root"}
			if !facts.IsRoot {
				conn.SetEscalation(target.EscalateSudo, false)
			}

			key, err := EnsureAccessKey(ctx, conn, facts)
			if tc.breakRoot {
				if err == nil || !strings.Contains(err.Error(), "/root/.ssh/authorized_keys") {
					t.Fatalf("EnsureAccessKey = %v, want an error naming /root/.ssh/authorized_keys", err)
				}
				data, _ := os.ReadFile(local("~/.ssh/authorized_keys"))
				if strings.Contains(string(data), "nixos-via-") {
					t.Errorf("the user's file keeps the throwaway key of the failed add: %q", data)
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureAccessKey: %v", err)
			}
			var got []string
			if key != nil {
				for _, f := range key.Files {
					if f != "/root/.ssh/authorized_keys" {
						f = "~/" + strings.TrimPrefix(f, u.HomeDir+"/")
					}
					got = append(got, f)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantAdded) {
				t.Fatalf("key added to %v, want %v", got, tc.wantAdded)
			}
			if key == nil {
				for _, f := range tc.files {
					data, _ := os.ReadFile(local(f.path))
					if string(data) != f.data {
						t.Errorf("%s changed although no key was needed: %q", f.path, data)
					}
				}
				for _, p := range []string{"/root/.ssh/authorized_keys", "~/.ssh/authorized_keys"} {
					if _, ok := before[p]; !ok {
						if _, err := os.Stat(local(p)); err == nil {
							t.Errorf("%s was created although no key was needed", p)
						}
					}
				}
				return
			}
			if !strings.HasPrefix(key.Comment, "nixos-via-") || !strings.HasSuffix(key.Line, " "+key.Comment) {
				t.Errorf("line %q, comment %q: want the line to end in nixos-via-<run id>", key.Line, key.Comment)
			}
			for _, p := range tc.wantAdded {
				wantUID := 0
				if strings.HasPrefix(p, "~/") {
					wantUID = uid
				}
				data, err := os.ReadFile(local(p))
				if err != nil {
					t.Fatal(err)
				}
				old, existed := before[p]
				if existed && !strings.HasSuffix(old, "\n") {
					old += "\n"
				}
				if got, want := string(data), old+key.Line+"\n"; got != want {
					t.Errorf("%s = %q, want %q", p, got, want)
				}
				for path, wantMode := range map[string]os.FileMode{local(p): 0o600, filepath.Dir(local(p)): 0o700 | os.ModeDir} {
					st, err := os.Stat(path)
					if err != nil {
						t.Fatal(err)
					}
					if existed && path == local(p) {
						wantMode = 0o644 // a file that was there keeps its mode
					}
					if got := st.Mode(); got != wantMode {
						t.Errorf("%s: mode %v, want %v", path, got, wantMode)
					}
					if got := int(st.Sys().(*syscall.Stat_t).Uid); got != wantUID {
						t.Errorf("%s: owner %d, want %d", path, got, wantUID)
					}
				}
			}
			// The key alone logs in where it was added.
			for _, login := range []string{"root", tc.user} {
				lo := o
				lo.Destination = fmt.Sprintf("%s@127.0.0.1:%d", login, s.Port)
				lo.IdentityFiles, lo.Password, lo.Signers = nil, "", []ssh.Signer{key.Signer}
				c, err := target.Dial(ctx, lo, t.TempDir())
				if err != nil {
					t.Errorf("log in as %s with the throwaway key alone: %v", login, err)
					continue
				}
				c.Close()
			}
			files := key.Files
			if err := key.Remove(ctx, conn); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if w := key.Where(); w != "" {
				t.Errorf("Where after Remove = %q, want empty", w)
			}
			for i, p := range tc.wantAdded {
				data, _ := os.ReadFile(local(p))
				if strings.Contains(string(data), key.Comment) {
					t.Errorf("%s (%s) still has the key after Remove: %q", p, files[i], data)
				}
				if old, ok := before[p]; ok && !strings.Contains(string(data), strings.TrimSpace(old)) {
					t.Errorf("Remove lost %s's own lines: %q", p, data)
				}
			}
		})
	}
}

// TestAccessKeyWhere: Where names the files and how to remove the line
// by its comment, without the key itself.
func TestAccessKeyWhere(t *testing.T) {
	k, err := newAccessKey("20250101-0123abcd")
	if err != nil {
		t.Fatal(err)
	}
	k.Files = []string{"/home/alice/.ssh/authorized_keys", "/root/.ssh/authorized_keys"}
	got := k.Where()
	for _, want := range []string{"nixos-via-20250101-0123abcd", "/home/alice/.ssh/authorized_keys and /root/.ssh/authorized_keys",
		"sed -i '/ nixos-via-20250101-0123abcd$/d' /home/alice/.ssh/authorized_keys /root/.ssh/authorized_keys"} {
		if !strings.Contains(got, want) {
			t.Errorf("Where() = %q, want it to contain %q", got, want)
		}
	}
	if strings.Contains(got, strings.Fields(k.Line)[1]) {
		t.Errorf("Where() shows the key itself: %q", got)
	}
}

func TestInstallerTrusts(t *testing.T) {
	pub := func() ssh.PublicKey {
		_, p := sshtest.NewKey(t)
		return p
	}
	a, b := pub(), pub()
	var params dsa.Parameters
	if err := dsa.GenerateParameters(&params, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	dk := &dsa.PrivateKey{PublicKey: dsa.PublicKey{Parameters: params}}
	if err := dsa.GenerateKey(dk, rand.Reader); err != nil {
		t.Fatal(err)
	}
	d, err := ssh.NewPublicKey(&dk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		offered, carried []ssh.PublicKey
		want             bool
	}{
		{"password login offers no key", nil, []ssh.PublicKey{a}, false},
		{"no carried keys", []ssh.PublicKey{a}, nil, false},
		{"offered key carried", []ssh.PublicKey{b, a}, []ssh.PublicKey{a}, true},
		{"another key carried", []ssh.PublicKey{b}, []ssh.PublicKey{a}, false},
		{"only a DSA key carried", []ssh.PublicKey{d}, []ssh.PublicKey{d}, false},
	} {
		if got := installerTrusts(tc.offered, tc.carried); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestReconnectOffersTheAccessKey: an installer that trusts only the
// run's throwaway key lets Reconnect in when Options.Signers has it (and
// the new connection keeps it for later dials), and not without it.
func TestReconnectOffersTheAccessKey(t *testing.T) {
	k, err := newAccessKey("20250101-reconnect")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		signers []ssh.Signer
		wantOK  bool
	}{
		{"with the throwaway key", []ssh.Signer{k.Signer}, true},
		{"without it", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := sshtest.Start(t, sshtest.Options{})
			// The installer: the same host key, only the throwaway key
			// (and its own client key, which we do not have) authorized.
			inst := sshtest.Start(t, sshtest.Options{HostKey: old.HostKeyPEM, AuthorizedKeys: []string{k.Line},
				OSRelease: "ID=nixos\nVARIANT_ID=installer\nPRETTY_NAME=\"NixOS (test installer)\"\n"})
			link := sshtest.StartProxy(t, old.Addr)
			c := connectTo(t, link.Addr, old)
			go func() {
				time.Sleep(time.Second)
				link.Close() // the old system goes away
			}()
			ctx := t.Context()
			conn, _, err := Reconnect(ctx, c, Options{DownTimeout: 20 * time.Second, UpTimeout: 4 * time.Second,
				Interval: 300 * time.Millisecond, Home: t.TempDir(), PostKexecPort: inst.Port, Signers: tc.signers})
			if got := err == nil; got != tc.wantOK {
				t.Fatalf("Reconnect ok = %v (%v), want %v", got, err, tc.wantOK)
			}
			if err != nil {
				return
			}
			defer conn.Close()
			again, err := target.DialResolved(ctx, conn.Resolved(), t.TempDir())
			if err != nil {
				t.Fatalf("a later dial with the installer connection's Resolved: %v", err)
			}
			again.Close()
		})
	}
}
