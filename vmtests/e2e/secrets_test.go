package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/internal/testutil"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
)

// TestInstallLUKSKeyFile is a LUKS install by a sudo user whose sudo asks
// for a password, which must keep its secrets (the LUKS key file's
// bytes, which are also the passphrase typed at boot, and the sudo
// password) out of sight: a sampler on the host (the provider, then the
// installer) and one on this machine read every process's argv and
// environment while nixos-via works, and the output, the --json events,
// the serial console (provider, installer and installed system) and the
// installed disk are searched; none may hold a secret. The install runs
// in three commands as a user continuing from a printed command would:
// kexec (as the sudo user), disko and install (as root in the installer,
// which is then inspected), and the reboot, where nobody types the
// passphrase at first: the reboot phase says the system waits for it.
func TestInstallLUKSKeyFile(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	m := w.bootWith(t, "luks-keyfile", 1, 512, true)
	keyFile, pass := secretKey(t)
	secrets := []string{pass, testimg.UserPassword}
	sampler := buildSampler(t)
	local := sampleHere(t, secrets)

	prov := waitProvider(t, ctx, w, m)
	startSampler(t, ctx, prov, sampler, secrets)
	prov.Close()
	args := w.installArgs(m, "luks-keyfile", "--sudo-password-env", "VIA_SUDO_PW", "--phases", "kexec")
	args[len(args)-1] = fmt.Sprintf("%s@127.0.0.1:%d", testimg.User, m.port)
	outs := []string{mustSucceed(t, ctx, m, "kexec phase", map[string]string{"VIA_SUDO_PW": testimg.UserPassword}, args...)}
	if !strings.Contains(outs[0], "logged in as "+testimg.User) {
		t.Errorf("output does not show the non-root login:\n%s", outs[0])
	}
	inst := dialInstalled(t, ctx, w, m) // the installer, with the host's key
	if !sawCommand(m.v.Console(), "sudo") {
		t.Errorf("the provider's sampler never saw sudo run: it did not watch nixos-via's commands\n%s", m.v.ConsoleTail(30))
	}
	startSampler(t, ctx, inst, sampler, secrets)

	outs = append(outs, mustSucceed(t, ctx, m, "disko and install", nil, w.installArgs(m, "luks-keyfile", "--json",
		"--disk-encryption-keys", "/tmp/secret.key", keyFile, "--phases", "disko,install")...))
	if got := run(t, ctx, inst, "test -e /tmp/secret.key && echo present || echo gone"); got != "gone" {
		t.Errorf("/tmp/secret.key in the installer after install: %s", got)
	}
	if got := run(t, ctx, inst, "cryptsetup status crypted | head -n1"); !strings.Contains(got, "is active") {
		t.Errorf("cryptsetup status crypted = %q", got)
	}
	if !sawCommand(m.v.Console(), "cryptsetup") {
		t.Errorf("the installer's sampler never saw cryptsetup run: it did not watch the disko script\n%s", m.v.ConsoleTail(30))
	}
	inst.Close()
	// Nobody types the passphrase the installed initrd asks for (the key
	// file existed at install time only): the reboot phase says the
	// system waits for it, succeeds, and records no key.
	khBefore, _ := os.ReadFile(m.knownHosts)
	args = w.installArgs(m, "luks-keyfile", "--phases", "reboot")
	args = append(args[:len(args)-1], "--timeout-reboot", "75s", args[len(args)-1])
	outs = append(outs, mustSucceed(t, ctx, m, "reboot phase", nil, args...))
	if !strings.Contains(outs[2], "waits for the passphrase of LUKS crypted") {
		t.Errorf("the reboot phase does not say the system waits for its passphrase:\n%s", outs[2])
	}
	if kh, _ := os.ReadFile(m.knownHosts); !bytes.Equal(kh, khBefore) {
		t.Errorf("known_hosts changed while the system waited for its passphrase:\n%s", kh)
	}
	if err := <-typePassphraseAtPrompt(t, ctx, m, pass); err != nil {
		t.Fatalf("answering the LUKS prompt: %v", err)
	}
	c := waitUpAcceptNew(t, ctx, w, m)
	if sys := run(t, ctx, c, "readlink /run/current-system"); !strings.Contains(sys, "nixos-system-luks-keyfile-") {
		t.Errorf("/run/current-system = %s, want the luks-keyfile system", sys)
	}
	checkRootOn(t, ctx, c, "crypted")
	c.Close()
	stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	m.v.Stop(stopCtx)

	names := []string{"the LUKS key", "the sudo password"}
	for _, hit := range local() {
		t.Errorf("a process on this machine holds a secret: %s", hit)
	}
	// The samplers never print a secret: their hits are lines of their own.
	console := m.v.Console()
	for _, hit := range regexp.MustCompile(`SECRET-HIT [^\r\n]*`).FindAllString(console, -1) {
		t.Errorf("a process on the host held a secret: %s", hit)
	}
	for i, s := range secrets {
		for j, out := range outs {
			if strings.Contains(out, s) {
				t.Errorf("nixos-via's output (run %d of 3) holds %s", j+1, names[i])
			}
		}
		if strings.Contains(console, s) {
			t.Errorf("the serial console holds %s", names[i])
		}
		if found, err := testutil.FileContains(m.v.DiskPaths[0], []byte(s)); err != nil || found {
			t.Errorf("the installed disk holds %s (found=%v, err=%v)", names[i], found, err)
		}
	}
}

// buildSampler builds testdata/sampler, static, for the guests.
func buildSampler(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sampler")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/sampler")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/sampler: %v\n%s", err, out)
	}
	return bin
}

// startSampler runs the sampler on the host in the background, as root,
// printing to the serial console; it runs until the host kexecs or stops.
func startSampler(t *testing.T, ctx context.Context, c *target.Conn, bin string, secrets []string) {
	t.Helper()
	if err := c.UploadFile(ctx, bin, "/run/nixos-via-test-sampler", 0o755, nil); err != nil {
		t.Fatalf("upload the sampler: %v", err)
	}
	var hexed []string
	for _, s := range secrets {
		hexed = append(hexed, hex.EncodeToString([]byte(s)))
	}
	cmd := "setsid /run/nixos-via-test-sampler " + strings.Join(hexed, " ") + " >/dev/console 2>&1 </dev/null &"
	if err := c.Run(ctx, cmd, nil, nil, nil); err != nil {
		t.Fatalf("start the sampler: %v", err)
	}
}

// sawCommand says whether a sampler reported a process named comm.
func sawCommand(console, comm string) bool {
	return strings.Contains(console, "SAMPLER saw comm="+comm+"\r") || strings.Contains(console, "SAMPLER saw comm="+comm+"\n")
}

// sampleHere reads every local process's argv and environment every 20 ms
// until the test ends, or until the returned function is called, which
// returns the processes that held a secret.
func sampleHere(t *testing.T, secrets []string) func() []string {
	t.Helper()
	var mu sync.Mutex
	var hits []string
	seen := map[string]bool{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			dirs, _ := filepath.Glob("/proc/[0-9]*")
			for _, d := range dirs {
				if _, err := strconv.Atoi(filepath.Base(d)); err != nil {
					continue
				}
				comm, _ := os.ReadFile(d + "/comm")
				for _, where := range []string{"cmdline", "environ"} {
					b, err := os.ReadFile(d + "/" + where)
					if err != nil {
						continue
					}
					for i, s := range secrets {
						hit := fmt.Sprintf("pid %s (%s): secret #%d in its %s", filepath.Base(d), strings.TrimSpace(string(comm)), i, where)
						if bytes.Contains(b, []byte(s)) && !seen[hit] {
							mu.Lock()
							seen[hit], hits = true, append(hits, hit)
							mu.Unlock()
						}
					}
				}
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	stop := func() []string {
		once.Do(func() { close(done); <-stopped })
		mu.Lock()
		defer mu.Unlock()
		return hits
	}
	t.Cleanup(func() { stop() })
	return stop
}
