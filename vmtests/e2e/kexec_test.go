package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/cmd/nixos-via/cli"
	"github.com/nixos-via/nixos-via/internal/target"
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

// TestInstallSmallRAM runs the whole efi-ext4 install on a 384 MiB host.
func TestInstallSmallRAM(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	m := w.boot(t, "small-ram", 1, 384)
	code, out := nixosVia(t, ctx, w.installArgs(m, "small-ram")...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n--- console ---\n%s", code, out, m.v.ConsoleTail(60))
	}
	checkInstalled(t, ctx, w, m, "small-ram", out)
}
