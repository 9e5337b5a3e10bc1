package target_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
	"golang.org/x/crypto/ssh"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// opts returns Options that reach s as root with its client key and known_hosts.
func opts(s *sshtest.Server) target.Options {
	return target.Options{
		Destination:     fmt.Sprintf("root@127.0.0.1:%d", s.Port),
		IdentityFiles:   []string{s.ClientKey},
		KnownHostsFiles: []string{s.KnownHosts},
		SSHConfigFile:   "none",
		ConnectTimeout:  5 * time.Second,
	}
}

func dial(t *testing.T, o target.Options) *target.Conn {
	t.Helper()
	c, err := target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func output(t *testing.T, c *target.Conn, cmd string) string {
	t.Helper()
	out, err := c.Output(ctxT(t, 20*time.Second), cmd, nil)
	if err != nil {
		t.Fatalf("Run %q: %v", cmd, err)
	}
	return strings.TrimSpace(string(out))
}

func TestKeyAuthRunsCommandAndReportsExitStatus(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := dial(t, opts(s))
	if got, want := output(t, c, "id -un; echo hi >&2"), "root"; got != want {
		t.Errorf("id -un = %q, want %q", got, want)
	}
	var stdout bytes.Buffer
	if err := c.Run(ctxT(t, 10*time.Second), "cat; echo -n ' world'", strings.NewReader("hello"), &stdout, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := stdout.String(), "hello world"; got != want {
		t.Errorf("stdin round trip = %q, want %q", got, want)
	}
	_, err := c.Output(ctxT(t, 10*time.Second), "echo broken >&2; exit 3", nil)
	var ee *target.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("exit 3: got %v, want *ExitError", err)
	}
	if ee.Status != 3 || !strings.Contains(ee.Stderr, "broken") {
		t.Errorf("ExitError = %+v, want status 3 with stderr 'broken'", ee)
	}
}

func TestRunIsCancelledWithContext(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := dial(t, opts(s))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Run(ctx, "sleep 30", nil, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run(sleep 30) with 0.5s deadline = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run returned after %s, want soon after the deadline", d)
	}
}

func TestAgentAuth(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	agentBin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Skip("no ssh-agent (apt-get install openssh-client)")
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agentCmd := exec.Command(agentBin, "-D", "-a", sock)
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentCmd.Process.Kill(); agentCmd.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	add := exec.Command("ssh-add", s.ClientKey)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	o := opts(s)
	o.IdentityFiles = nil
	o.AgentSocket = sock
	c := dial(t, o)
	if got := output(t, c, "echo agent-ok"); got != "agent-ok" {
		t.Errorf("got %q, want agent-ok", got)
	}
}

func TestPasswordAuthAndWrongPassword(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{Password: true})
	sshtest.EnsureUser(t, "nvtest-pw", "correct horse", false, false)
	o := opts(s)
	o.Destination = fmt.Sprintf("nvtest-pw@127.0.0.1:%d", s.Port)
	o.IdentityFiles = nil
	o.Password = "correct horse"
	c := dial(t, o)
	if got := output(t, c, "id -un"); got != "nvtest-pw" {
		t.Errorf("id -un = %q, want nvtest-pw", got)
	}
	o.Password = "wrong"
	_, err := target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
	var ae *target.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("wrong password: got %v, want *AuthError", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q contains the password", err)
	}
}

func TestAcceptNewThenChangedKeyIsRefusedWithBothFingerprints(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	o := opts(s)
	o.KnownHostsFiles = []string{kh}
	var warnings []string
	o.Warn = func(m string) { warnings = append(warnings, m) }
	c := dial(t, o)
	c.Close()
	data, err := os.ReadFile(kh)
	if err != nil {
		t.Fatalf("accept-new did not record the key: %v", err)
	}
	if got, want := string(data), fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, ssh.MarshalAuthorizedKey(s.HostKey)); got != want {
		t.Errorf("known_hosts = %q, want %q", got, want)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "Permanently added") {
		t.Errorf("warnings = %q, want one 'Permanently added'", warnings)
	}
	// Second contact with the same key: accepted, nothing appended.
	dial(t, o).Close()
	if again, _ := os.ReadFile(kh); !bytes.Equal(again, data) {
		t.Errorf("known_hosts changed on second contact: %q", again)
	}

	oldFP := ssh.FingerprintSHA256(s.HostKey)
	s.ReplaceHostKey(t)
	newFP := ssh.FingerprintSHA256(s.HostKey)
	_, err = target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
	var mm *target.HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("changed key: got %v, want *HostKeyMismatchError", err)
	}
	for _, fp := range []string{oldFP, newFP} {
		if !strings.Contains(err.Error(), fp) {
			t.Errorf("error %q does not name fingerprint %s", err, fp)
		}
	}
}

func TestKnownByEd25519IsNotRefusedForOfferingOtherTypes(t *testing.T) {
	// The server also offers ECDSA and RSA keys, which Go's client would
	// prefer by default; the known_hosts entry is ed25519 only.
	dir := t.TempDir()
	var extra strings.Builder
	for _, typ := range []string{"ecdsa", "rsa"} {
		p := filepath.Join(dir, "host_"+typ)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-f", p).CombinedOutput(); err != nil {
			t.Skipf("ssh-keygen: %v: %s", err, out)
		}
		fmt.Fprintf(&extra, "HostKey %s\n", p)
	}
	s := sshtest.Start(t, sshtest.Options{ExtraConfig: extra.String()})
	o := opts(s)
	o.StrictHostKeyChecking = target.StrictYes
	c := dial(t, o)
	if got, want := c.HostKey().Type(), ssh.KeyAlgoED25519; got != want {
		t.Errorf("negotiated host key type %s, want %s", got, want)
	}
}

func TestStrictYesRefusesUnknownHost(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	o := opts(s)
	o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "empty")}
	o.StrictHostKeyChecking = target.StrictYes
	_, err := target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
	var uk *target.UnknownHostKeyError
	if !errors.As(err, &uk) {
		t.Fatalf("got %v, want *UnknownHostKeyError", err)
	}
}

func TestPinnedHostKey(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	o := opts(s)
	o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "none")}
	o.HostKeyPin = ssh.FingerprintSHA256(s.HostKey)
	dial(t, o).Close()
	if _, err := os.Stat(o.KnownHostsFiles[0]); err == nil {
		t.Errorf("a pinned connection wrote known_hosts")
	}
	o.HostKeyPin = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	_, err := target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
	var mm *target.HostKeyMismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(s.HostKey)) {
		t.Fatalf("wrong pin: got %v, want a mismatch naming the presented key", err)
	}
}

func TestStrictNoWarnsLoudly(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	o := opts(s)
	o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "kh")}
	o.SSHOptions = []string{"StrictHostKeyChecking=no"}
	var warnings []string
	o.Warn = func(m string) { warnings = append(warnings, m) }
	dial(t, o).Close()
	if len(warnings) == 0 || !strings.Contains(warnings[0], "host key checking is off") {
		t.Errorf("warnings = %q, want a loud warning", warnings)
	}
}

func TestProxyJumpThroughSecondSSHD(t *testing.T) {
	for _, tc := range []struct {
		name       string
		forwarding string // the jump host's AllowTcpForwarding
		wantErr    bool
	}{
		{"forwarding allowed", "yes", false},
		// Proves the connection really goes through the jump host.
		{"forwarding refused by the jump host", "no", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jump := sshtest.Start(t, sshtest.Options{ExtraConfig: "AllowTcpForwarding " + tc.forwarding + "\n"})
			signer, err := ssh.ParsePrivateKey(readFile(t, jump.ClientKey))
			if err != nil {
				t.Fatal(err)
			}
			// The final host accepts the jump server's client key too.
			final := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []string{string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}})
			kh := filepath.Join(t.TempDir(), "known_hosts")
			both := append(readFile(t, jump.KnownHosts), readFile(t, final.KnownHosts)...)
			if err := os.WriteFile(kh, both, 0o600); err != nil {
				t.Fatal(err)
			}
			o := opts(final)
			o.IdentityFiles = []string{jump.ClientKey}
			o.KnownHostsFiles = []string{kh}
			o.StrictHostKeyChecking = target.StrictYes
			o.SSHOptions = []string{fmt.Sprintf("ProxyJump=root@127.0.0.1:%d", jump.Port)}
			c, err := target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "ProxyJump") && !strings.Contains(err.Error(), "prohibited") {
					t.Fatalf("Dial through a jump host that refuses forwarding: err = %v, want a failure", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial via ProxyJump: %v", err)
			}
			defer c.Close()
			if got := output(t, c, "echo ok"); got != "ok" {
				t.Errorf("got %q", got)
			}
		})
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSSHConfigAliasHostNamePortUserIdentity(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("Host mybox\n  HostName 127.0.0.1\n  Port %d\n  User root\n  IdentityFile %s\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n",
		s.Port, s.ClientKey, s.KnownHosts)
	if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := target.Dial(ctxT(t, 20*time.Second), target.Options{Destination: "mybox"}, home)
	if err != nil {
		t.Fatalf("Dial(mybox): %v", err)
	}
	defer c.Close()
	if got := output(t, c, "id -un"); got != "root" {
		t.Errorf("id -un = %q", got)
	}
}

func TestSudoForNonRootUser(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	const pw = "s3cret sudo"
	sshtest.EnsureUser(t, "nvtest-sudo", pw, true, false)
	o := opts(s)
	o.Destination = fmt.Sprintf("nvtest-sudo@127.0.0.1:%d", s.Port)
	o.SudoPassword = pw
	c := dial(t, o)
	f, err := c.ProbeFacts(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if f.IsRoot || f.Escalation != "sudo" || !f.SudoPassword {
		t.Fatalf("facts: isRoot=%v escalation=%q needsPassword=%v, want false sudo true", f.IsRoot, f.Escalation, f.SudoPassword)
	}
	c.SetEscalation(target.Escalation(f.Escalation), f.SudoPassword)
	var out bytes.Buffer
	if err := c.Run(ctxT(t, 20*time.Second), "id -u; cat", strings.NewReader("payload"), &out, nil); err != nil {
		t.Fatalf("sudo run: %v", err)
	}
	if got, want := out.String(), "0\npayload"; got != want {
		t.Errorf("sudo output = %q, want %q (the password must not reach the command)", got, want)
	}
	// A wrong password fails, and the error does not contain it.
	o.SudoPassword = "wrong-pass"
	c2 := dial(t, o)
	c2.SetEscalation(target.EscalateSudo, true)
	_, err = c2.Output(ctxT(t, 30*time.Second), "id -u", nil)
	if err == nil || strings.Contains(err.Error(), "wrong-pass") {
		t.Errorf("wrong sudo password: err = %v, want a failure without the password", err)
	}
}

func TestSudoNoPasswordDoesNotFeedPassword(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	sshtest.EnsureUser(t, "nvtest-nopw", "x", true, true)
	o := opts(s)
	o.Destination = fmt.Sprintf("nvtest-nopw@127.0.0.1:%d", s.Port)
	o.SudoPassword = "should-not-appear"
	c := dial(t, o)
	f, err := c.ProbeFacts(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if f.Escalation != "sudo" || f.SudoPassword {
		t.Fatalf("escalation=%q needsPassword=%v, want sudo false", f.Escalation, f.SudoPassword)
	}
	c.SetEscalation(target.EscalateSudo, f.SudoPassword)
	var out bytes.Buffer
	if err := c.Run(ctxT(t, 20*time.Second), "id -u; cat", strings.NewReader("in"), &out, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "0\nin"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestUpload100MBChecksum(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noSFTP bool
	}{{"sftp", false}, {"cat-fallback", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{NoSFTP: tc.noSFTP})
			c := dial(t, opts(s))
			const size = 100 << 20
			src := filepath.Join(t.TempDir(), "blob")
			f, err := os.Create(src)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			// Incompressible-ish, deterministic content.
			block := make([]byte, 1<<20)
			for i := 0; i < size/len(block); i++ {
				for j := range block {
					block[j] = byte((i*7919 + j*31) ^ (j >> 3))
				}
				f.Write(block)
				h.Write(block)
			}
			f.Close()
			want := fmt.Sprintf("%x", h.Sum(nil))
			dst := filepath.Join(t.TempDir(), "sub", "blob")
			var last int64
			if err := c.UploadFile(ctxT(t, 120*time.Second), src, dst, 0o640, func(done, total int64) { last = done }); err != nil {
				t.Fatalf("UploadFile: %v", err)
			}
			if last != size {
				t.Errorf("progress ended at %d, want %d", last, size)
			}
			if got := output(t, c, "sha256sum "+dst+" | cut -d' ' -f1"); got != want {
				t.Errorf("remote sha256 = %s, want %s", got, want)
			}
			st, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Mode().Perm(); got != 0o640 {
				t.Errorf("mode = %o, want 640", got)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dst), ".blob.part")); err == nil {
				t.Errorf("temporary .part file left behind")
			}
		})
	}
}

func TestWaitUpDeadlineSaysWhatItSaw(t *testing.T) {
	sshtest.Need(t)
	port := sshtest.FreePort(t) // nothing listens here
	o := target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", port), IdentityFiles: []string{writeKey(t)},
		SSHConfigFile: "none", KnownHostsFiles: []string{filepath.Join(t.TempDir(), "kh")}, ConnectTimeout: time.Second}
	res, err := o.Resolve(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = target.WaitUp(context.Background(), res, t.TempDir(), 3*time.Second, 500*time.Millisecond)
	var we *target.WaitError
	if !errors.As(err, &we) {
		t.Fatalf("got %v, want *WaitError", err)
	}
	if !strings.Contains(err.Error(), "connection refused") || we.Attempts < 2 {
		t.Errorf("WaitError = %q (attempts %d), want 'connection refused' after several attempts", err, we.Attempts)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("WaitUp took %s with a 3s deadline", d)
	}
}

func TestWaitUpSeesServerComeUpAndWaitDownSeesItGo(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	s.Stop()
	proxy := sshtest.StartProxy(t, s.Addr)
	o := opts(s)
	o.Destination = fmt.Sprintf("root@127.0.0.1:%d", proxy.Port)
	o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "kh")}
	o.HostKeyPin = ssh.FingerprintSHA256(s.HostKey)
	res, err := o.Resolve(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(1500 * time.Millisecond)
		s.Restart(t)
	}()
	c, err := target.WaitUp(ctxT(t, 30*time.Second), res, t.TempDir(), 20*time.Second, 300*time.Millisecond)
	if err != nil {
		t.Fatalf("WaitUp: %v", err)
	}
	// The host "goes away": every connection through the proxy is cut.
	go func() {
		time.Sleep(500 * time.Millisecond)
		proxy.Close()
	}()
	if err := c.WaitDown(ctxT(t, 30*time.Second), 15*time.Second, 300*time.Millisecond); err != nil {
		t.Fatalf("WaitDown: %v", err)
	}
}

func TestWaitDownDeadlineWhileHostStaysUp(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := dial(t, opts(s))
	err := c.WaitDown(ctxT(t, 30*time.Second), 2*time.Second, 300*time.Millisecond)
	var we *target.WaitError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), "still answering") {
		t.Fatalf("got %v, want a WaitError saying the host still answers", err)
	}
}

func writeKey(t *testing.T) string {
	pemKey, _ := sshtest.NewKey(t)
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFactsFromRealHost(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := dial(t, opts(s))
	f, err := c.ProbeFacts(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	uname := func(flag string) string {
		out, err := exec.Command("uname", flag).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if f.OS != "Linux" || f.Arch != uname("-m") || f.Kernel != uname("-r") {
		t.Errorf("os/arch/kernel = %s/%s/%s, want Linux/%s/%s", f.OS, f.Arch, f.Kernel, uname("-m"), uname("-r"))
	}
	if !f.IsRoot || f.Escalation != "none" {
		t.Errorf("isRoot=%v escalation=%q, want true none", f.IsRoot, f.Escalation)
	}
	if f.MemTotalKiB <= 0 || f.MemAvailKiB <= 0 || f.MemAvailKiB > f.MemTotalKiB {
		t.Errorf("mem total=%d avail=%d", f.MemTotalKiB, f.MemAvailKiB)
	}
	_, efiErr := os.Stat("/sys/firmware/efi")
	if want := map[bool]string{true: "efi", false: "bios"}[efiErr == nil]; f.Firmware != want {
		t.Errorf("firmware = %q, want %q", f.Firmware, want)
	}
	_, tarErr := exec.LookPath("tar")
	if f.Tools.Tar != (tarErr == nil) {
		t.Errorf("tools.tar = %v, want %v", f.Tools.Tar, tarErr == nil)
	}
	if !f.Tools.SFTPServer && fileExists("/usr/lib/openssh/sftp-server") {
		t.Errorf("tools.sftpServer = false, but /usr/lib/openssh/sftp-server exists")
	}
	entries, _ := os.ReadDir("/sys/block")
	var wantDisks []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "dm-") || strings.HasPrefix(n, "md") || strings.HasPrefix(n, "zram") || strings.HasPrefix(n, "sr") || strings.HasPrefix(n, "nbd") {
			continue
		}
		if fileExists("/sys/block/" + n + "/device") {
			wantDisks = append(wantDisks, n)
		}
	}
	var gotDisks []string
	for _, d := range f.Disks {
		gotDisks = append(gotDisks, d.Name)
		sectors := strings.TrimSpace(string(readFile(t, "/sys/block/"+d.Name+"/size")))
		if fmt.Sprint(d.SizeBytes/512) != sectors {
			t.Errorf("disk %s size %d bytes, /sys says %s sectors", d.Name, d.SizeBytes, sectors)
		}
	}
	if strings.Join(gotDisks, ",") != strings.Join(wantDisks, ",") {
		t.Errorf("disks = %v, want %v", gotDisks, wantDisks)
	}
	// The root filesystem's disk shows as mounted.
	rootDev := ""
	for _, line := range strings.Split(string(readFile(t, "/proc/mounts")), "\n") {
		if fs := strings.Fields(line); len(fs) > 1 && fs[1] == "/" && strings.HasPrefix(fs[0], "/dev/") {
			rootDev = fs[0]
		}
	}
	for _, d := range f.Disks {
		if rootDev != "" && strings.HasPrefix(rootDev, d.Path) && len(d.Mounted) == 0 {
			t.Errorf("disk %s holds / (%s) but is not reported mounted", d.Name, rootDev)
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

var _ = io.Discard

func TestPinnedFingerprintOfEveryKeyTypeTheHostHas(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "host_ecdsa")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", p).CombinedOutput(); err != nil {
		t.Skipf("ssh-keygen: %v: %s", err, out)
	}
	pubData, err := os.ReadFile(p + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	ecdsaPub, _, _, _, err := ssh.ParseAuthorizedKey(pubData)
	if err != nil {
		t.Fatal(err)
	}
	s := sshtest.Start(t, sshtest.Options{ExtraConfig: "HostKey " + p + "\n"})
	for _, pin := range []string{ssh.FingerprintSHA256(s.HostKey), ssh.FingerprintSHA256(ecdsaPub)} {
		o := opts(s)
		o.KnownHostsFiles = []string{filepath.Join(t.TempDir(), "kh")}
		o.HostKeyPin = pin
		c, err := target.Dial(ctxT(t, 20*time.Second), o, t.TempDir())
		if err != nil {
			t.Errorf("pin %s: %v", pin, err)
			continue
		}
		if got := ssh.FingerprintSHA256(c.HostKey()); got != pin {
			t.Errorf("pin %s: connected with key %s", pin, got)
		}
		c.Close()
	}
}

func TestOneWriterForStdoutAndStderrKeepsEverything(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := dial(t, opts(s))
	for i := 0; i < 10; i++ {
		var out bytes.Buffer
		if err := c.Run(ctxT(t, 10*time.Second), "echo out; echo err >&2; echo out2", nil, &out, &out); err != nil {
			t.Fatal(err)
		}
		got := out.String()
		for _, want := range []string{"out\n", "err\n", "out2\n"} {
			if !strings.Contains(got, want) {
				t.Fatalf("run %d: output %q lacks %q", i, got, want)
			}
		}
	}
}

func TestReplaceKnownHostRecordsTheNewKeyAndDropsTheOld(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	other := "otherhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBn2lI6F8CdTqYHrPu1Vz5Eb5W6B4sXOZ8o8r9kWk6bX\n"
	old := readFile(t, s.KnownHosts)
	os.WriteFile(kh, append([]byte(other), old...), 0o600)
	s.ReplaceHostKey(t) // a reinstalled host
	o := opts(s)
	o.KnownHostsFiles = []string{kh}
	o.ReplaceKnownHost = true
	var warnings []string
	o.Warn = func(m string) { warnings = append(warnings, m) }
	dial(t, o).Close()
	got := string(readFile(t, kh))
	want := other + fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, ssh.MarshalAuthorizedKey(s.HostKey))
	if got != want {
		t.Errorf("known_hosts =\n%s\nwant\n%s", got, want)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "replacing the old one") {
		t.Errorf("warnings = %q", warnings)
	}
	// Now plain accept-new checking works against the new key.
	o.ReplaceKnownHost = false
	o.StrictHostKeyChecking = target.StrictYes
	dial(t, o).Close()
}
