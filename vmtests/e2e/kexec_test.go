package e2e

import (
	"archive/tar"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/cmd/nixos-via/cli"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/kexec"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
)

// kexecArgs is `nixos-via --phases kexec` against m, as the given user.
func (w *world) kexecArgs(m *machine, user string, extra ...string) []string {
	args := []string{"--phases", "kexec", "--kexec", w.installer,
		"-i", w.keys.ClientKeyFile, "--ssh-option", "UserKnownHostsFile=" + m.knownHosts, "--timeout-kexec", "4m"}
	args = append(args, extra...)
	return append(args, fmt.Sprintf("%s@127.0.0.1:%d", user, m.port))
}

func factsOf(t *testing.T, ctx context.Context, w *world, m *machine) target.Facts {
	t.Helper()
	code, out := nixosVia(t, ctx, "facts", "--json", "-i", w.keys.ClientKeyFile, "--ssh-option", "UserKnownHostsFile="+m.knownHosts,
		"--ssh-option", "StrictHostKeyChecking=yes", fmt.Sprintf("root@127.0.0.1:%d", m.port))
	if code != 0 {
		t.Fatalf("facts: exit %d\n%s", code, out)
	}
	var f target.Facts
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &f); err != nil {
		t.Fatalf("facts: %v\n%s", err, out)
	}
	return f
}

// TestKexecPhase: provider -> `--phases kexec` as root and as a sudo user
// with a password -> the installer answers with the same host key (strict
// known_hosts), the same key logs in as root, and facts say installer.
func TestKexecPhase(t *testing.T) {
	w := setup(t)
	for _, user := range []string{"root", testimg.User} {
		t.Run(user, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
			defer cancel()
			m := w.boot(t, "kexec-"+user, 1, 512)
			start := time.Now()
			code, out := nixosViaEnv(t, ctx, map[string]string{"PW": testimg.UserPassword}, w.kexecArgs(m, user, "--sudo-password-env", "PW")...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n--- console ---\n%s", code, out, m.v.ConsoleTail(40))
			}
			t.Logf("kexec phase (connect, upload, run, reconnect): %s", time.Since(start).Round(time.Second))
			f := factsOf(t, ctx, w, m)
			if !f.IsInstaller || !f.IsRoot {
				t.Errorf("after kexec: installer=%v root=%v, want both", f.IsInstaller, f.IsRoot)
			}
			if strings.Contains(out, testimg.UserPassword) {
				t.Errorf("the sudo password was printed")
			}
		})
	}
}

// TestKexecRefusedWhenDisabled: a host booted with kexec_load_disabled=1 is
// refused by pre-flight with exit 5, before anything is uploaded.
func TestKexecRefusedWhenDisabled(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	prov := testimg.Provider(t, w.keys, "sysctl.kernel.kexec_load_disabled=1")
	dw := *w
	dw.provDisk = providerDisk(t, prov.Kernel, prov.Initrd, prov.Cmdline)
	m := dw.boot(t, "kexec-disabled", 1, 512)
	code, out := nixosVia(t, ctx, w.kexecArgs(m, "root")...)
	if code != cli.ExitRefused || !strings.Contains(out, "kexec_load_disabled") {
		t.Fatalf("exit %d, want %d naming kexec_load_disabled\n%s", code, cli.ExitRefused, out)
	}
	if strings.Contains(out, "uploading") {
		t.Errorf("the installer was uploaded before the refusal:\n%s", out)
	}
	c := waitProvider(t, ctx, w, m)
	if got := run(t, ctx, c, "ls -d /root/.nixos-via-kexec.* 2>/dev/null | wc -l"); got != "0" {
		t.Errorf("%s work directories left on the host", got)
	}
}

// tarEntry is a regular file added to a repacked installer tarball.
type tarEntry struct {
	name string
	data []byte
	mode int64
}

// repackInstaller copies the installer tarball src into a new tarball with
// kexec/run replaced by editRun(old run) and the files in extra added.
func repackInstaller(t *testing.T, src string, editRun func(run string) string, extra ...tarEntry) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	out := filepath.Join(t.TempDir(), "installer.tar.gz")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	sawRun := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", src, err)
		}
		var body io.Reader = tr
		if hdr.Name == "kexec/run" {
			old, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			run := editRun(string(old))
			hdr.Size, body, sawRun = int64(len(run)), strings.NewReader(run), true
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, body); err != nil {
			t.Fatalf("copy %s: %v", hdr.Name, err)
		}
	}
	if !sawRun {
		t.Fatalf("%s has no kexec/run", src)
	}
	for _, e := range extra {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: e.mode, Size: int64(len(e.data)), Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// newHostKey returns a fresh ed25519 host key: the private key in OpenSSH
// PEM form and its public key.
func newHostKey(t *testing.T) ([]byte, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "another installer")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), sshPub
}

// TestKexecInstallerWithAnotherHostKey: an installer whose run packs a key
// of its own instead of the host's keys comes up with that key; nixos-via
// stops with exit 4 naming both fingerprints and does not record it.
func TestKexecInstallerWithAnotherHostKey(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	privPEM, otherKey := newHostKey(t)
	// run copies every /etc/ssh/ssh_host_* into the cpio the installer
	// restores its keys from; here it copies the tarball's own key instead.
	const hostKeysLoop = "for f in /etc/ssh/ssh_host_*; do"
	installer := repackInstaller(t, w.installer, func(run string) string {
		if n := strings.Count(run, hostKeysLoop); n != 1 {
			t.Fatalf("kexec/run has %q %d times, want once: the test cannot swap the host keys", hostKeysLoop, n)
		}
		return strings.Replace(run, hostKeysLoop, `for f in "$here"/own-host-keys/ssh_host_*; do`, 1)
	}, tarEntry{name: "kexec/own-host-keys/ssh_host_ed25519_key", data: privPEM, mode: 0o600})
	kw := *w
	kw.installer = installer
	m := kw.boot(t, "kexec-other-key", 0, 512)

	code, out := nixosViaEnv(t, ctx, map[string]string{"XDG_CACHE_HOME": t.TempDir()}, kw.kexecArgs(m, "root")...)
	if code != cli.ExitHostKey {
		t.Fatalf("exit %d, want %d (host key mismatch)\n%s\n--- console ---\n%s", code, cli.ExitHostKey, out, m.v.ConsoleTail(40))
	}
	providerKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(w.keys.HostKey.PublicLine))
	if err != nil {
		t.Fatal(err)
	}
	providerFP := ssh.FingerprintSHA256(providerKey)
	for _, want := range []string{providerFP, ssh.FingerprintSHA256(otherKey), "the host before kexec", kexec.Marker} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not contain %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "the installer answers") {
		t.Errorf("nixos-via went on after the mismatch:\n%s", out)
	}
	// The first contact recorded the provider's other keys (rsa, ecdsa)
	// beside the known one; the refused key is recorded nowhere.
	other := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey)))
	if kh, _ := os.ReadFile(m.knownHosts); !strings.HasPrefix(string(kh), m.hostLine) || strings.Contains(string(kh), other) {
		t.Errorf("known_hosts after a mismatch:\n%s\nwant it to start with\n%s\nand not to hold %s", kh, m.hostLine, other)
	}
	// The key it refused is the installer's: with it, facts see an installer.
	inst := &machine{v: m.v, port: m.port, knownHosts: filepath.Join(t.TempDir(), "known_hosts")}
	if err := os.WriteFile(inst.knownHosts, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", m.port, ssh.MarshalAuthorizedKey(otherKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	if f := factsOf(t, ctx, w, inst); !f.IsInstaller {
		t.Errorf("the host presenting %s is not the installer: os %s", ssh.FingerprintSHA256(otherKey), f.OSName)
	}
}

// TestKexecRunWithoutMarker: a run that prints some lines and exits, with
// a failure or with 0, but never prints the marker nor kexecs. nixos-via
// fails with exit 6 showing run's lines and the kernel's last messages,
// without waiting for a reboot; the host still runs its own system, and
// the work directory keeps run.log, for a look at what happened, and nothing
// else: the installer's files are removed (they would fill RAM on a small host).
// ourRunHead starts a stand-in for our run: like it, it calls the
// tarball's busybox, so the pre-flight asks the host for nothing but sh
// (a run that does not would be taken for nixos-images' and refused on a
// host without nohup, cpio, ...).
const ourRunHead = "#!/bin/sh\nhere=${0%/*}\n\"$here/busybox\" true || exit 4\n"

func TestKexecRunWithoutMarker(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	m := w.boot(t, "kexec-no-marker", 0, 512)
	c := waitProvider(t, ctx, w, m)
	bootID := run(t, ctx, c, "cat /proc/sys/kernel/random/boot_id")
	tests := []struct {
		name    string
		run     string
		lines   []string // what run prints
		wantErr string
	}{
		{"run fails", ourRunHead + "echo 'run: collecting host keys'\necho 'run: kexec --load failed: Invalid argument' >&2\nexit 3\n",
			[]string{"run: collecting host keys", "run: kexec --load failed: Invalid argument"}, "kexec/run: exit 3 (its output is in "},
		{"run exits 0", ourRunHead + "echo 'run: collecting host keys'\necho 'run: nothing to load'\n",
			[]string{"run: collecting host keys", "run: nothing to load"}, fmt.Sprintf("kexec/run finished without printing %q", kexec.Marker)},
	}
	workDirRe := regexp.MustCompile(`uploading the installer to (\S+)`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			installer := repackInstaller(t, w.installer, func(string) string { return tc.run })
			kw := *w
			kw.installer = installer
			code, out := nixosViaEnv(t, ctx, map[string]string{"XDG_CACHE_HOME": t.TempDir()}, kw.kexecArgs(m, "root")...)
			if code != cli.ExitKexec {
				t.Fatalf("exit %d, want %d\n%s", code, cli.ExitKexec, out)
			}
			for _, want := range append([]string{tc.wantErr, "--- output of the host ---", "--- last kernel messages ---"}, tc.lines...) {
				if !strings.Contains(out, want) {
					t.Errorf("output does not contain %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "waiting for the host to go down") {
				t.Errorf("nixos-via waited for a reboot after run failed:\n%s", out)
			}
			if got := run(t, ctx, c, "cat /proc/sys/kernel/random/boot_id"); got != bootID {
				t.Errorf("the host rebooted (boot id %s -> %s)", bootID, got)
			}
			if f := factsOf(t, ctx, w, m); f.IsInstaller || f.OSID == "nixos" {
				t.Errorf("after a failed run the host is %s (installer=%v), want the provider", f.OSName, f.IsInstaller)
			}
			dir := workDirRe.FindStringSubmatch(out)
			if dir == nil {
				t.Fatalf("output does not name the work directory:\n%s", out)
			}
			log := run(t, ctx, c, "cat "+target.ShellQuote(dir[1]+"/run.log"))
			for _, want := range tc.lines {
				if !strings.Contains(log, want) {
					t.Errorf("%s/run.log does not contain %q:\n%s", dir[1], want, log)
				}
			}
			if !strings.Contains(out, dir[1]+"/run.log") {
				t.Errorf("output does not say where run.log is:\n%s", out)
			}
			if got := run(t, ctx, c, "ls -A "+target.ShellQuote(dir[1])); got != "run.log" {
				t.Errorf("work directory holds %q after the failed run, want only run.log", got)
			}
		})
	}
}
