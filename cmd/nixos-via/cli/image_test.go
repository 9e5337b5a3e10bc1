package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/images"
)

func runImageArgs(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := Env{
		Args: args, Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string { return env[k] },
	}
	code := finish(e, runImage(context.Background(), e, args))
	return code, stdout.String(), stderr.String()
}

func writeKeyPair(t *testing.T, dir string) (priv, pub string) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	priv = filepath.Join(dir, "key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return priv, priv + ".pub"
}

func TestImageUsageErrors(t *testing.T) {
	dir := t.TempDir()
	priv, pub := writeKeyPair(t, dir)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no verb", nil, nil, "missing verb"},
		{"unknown verb", nil, []string{"rescue"}, `unknown verb "rescue"`},
		{"unknown flag", nil, []string{"installer", "--bogus"}, "unknown flag"},
		{"installer without out", nil, []string{"installer"}, "--out FILE.tar.gz is required"},
		{"installer bad suffix", nil, []string{"installer", "--out", "x.zip"}, "want a .tar.gz"},
		{"installer missing agent", nil, []string{"installer", "--out", filepath.Join(dir, "i.tar.gz"), "--agent", filepath.Join(dir, "none")}, "--agent"},
		{"provider without out", nil, []string{"provider", "--host-key", priv}, "--out DIR is required"},
		{"provider without host key", nil, []string{"provider", "--out", dir}, "--host-key FILE is required"},
		{"provider public key as host key", nil, []string{"provider", "--out", dir, "--host-key", pub}, "--host-key"},
		{"provider password env unset", nil, []string{"provider", "--out", dir, "--host-key", priv, "--user", "alice", "--user-password-env", "PW"}, "$PW is empty"},
		{"provider password without user", map[string]string{"PW": "x"}, []string{"provider", "--out", dir, "--host-key", priv, "--user-password-env", "PW"}, "need --user"},
		{"provider bad compression", nil, []string{"provider", "--out", dir, "--host-key", priv, "--compression", "lz5"}, "--compression"},
		{"extra argument", nil, []string{"provider", "--out", dir, "--host-key", priv, "extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runImageArgs(t, tt.env, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
		})
	}
	if code, stdout, _ := runImageArgs(t, nil, "--help"); code != ExitOK || !strings.Contains(stdout, "image provider") {
		t.Errorf("image --help = %d, %q", code, stdout)
	}
}

func needImageHost(t *testing.T) {
	t.Helper()
	if _, err := images.HostKernel(""); err != nil {
		t.Skip(err)
	}
	for _, f := range []string{"/bin/busybox", "/usr/sbin/sshd", "/usr/bin/sudo", "/usr/sbin/kexec", "/usr/bin/ip", "/usr/sbin/sgdisk", "/usr/sbin/cryptsetup"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing: %v", f, err)
		}
	}
}

func TestImageProviderBuilds(t *testing.T) {
	needImageHost(t)
	dir := t.TempDir()
	priv, pub := writeKeyPair(t, dir)
	out := filepath.Join(dir, "provider")
	code, stdout, stderr := runImageArgs(t, map[string]string{"PW": "pw"}, "provider", "--out", out,
		"--host-key", priv, "--authorized-keys", pub, "--user", "alice", "--user-password-env", "PW",
		"--cmdline", "sysctl.kernel.kexec_load_disabled=1")
	if code != ExitOK {
		t.Fatalf("image provider = %d; stderr:\n%s", code, stderr)
	}
	for _, f := range []string{"bzImage", "initrd", "cmdline"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s/%s: %v", out, f, err)
		}
	}
	if !strings.Contains(stdout, "cmdline\tconsole=ttyS0 panic=-1 sysctl.kernel.kexec_load_disabled=1") {
		t.Errorf("stdout = %q, want the cmdline line", stdout)
	}
	if strings.Contains(stdout+stderr, "pw\n") {
		t.Errorf("the password shows up in the output")
	}
}

func TestImageInstallerBuilds(t *testing.T) {
	needImageHost(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "installer.tar.gz")
	// Any static executable stands in for the agent here; the VM tests
	// boot the real one.
	code, stdout, stderr := runImageArgs(t, nil, "installer", "--out", out, "--agent", "/bin/busybox")
	if code != ExitOK {
		t.Fatalf("image installer = %d; stderr:\n%s", code, stderr)
	}
	if !strings.HasPrefix(stdout, out+"\t") {
		t.Errorf("stdout = %q, want the tarball path first", stdout)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	got := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h.Mode
	}
	for _, name := range []string{"kexec/bzImage", "kexec/initrd", "kexec/run", "kexec/kexec", "kexec/ip", "kexec/busybox"} {
		mode, ok := got[name]
		if !ok {
			t.Errorf("tarball lacks %s", name)
			continue
		}
		if name != "kexec/bzImage" && name != "kexec/initrd" && mode&0o111 == 0 {
			t.Errorf("%s mode %o is not executable", name, mode)
		}
	}
	// A dynamically linked agent is refused before anything is built.
	code, _, stderr = runImageArgs(t, nil, "installer", "--out", filepath.Join(dir, "x.tar.gz"), "--agent", "/usr/sbin/sshd")
	if code != ExitUsage || !strings.Contains(stderr, "dynamically linked") {
		t.Errorf("dynamic agent: exit %d, stderr %q; want usage error about dynamic linking", code, stderr)
	}
}
