package localvm

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/images/cpio"
	"github.com/nixos-via/nixos-via/kexec"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
)

func TestCmdline(t *testing.T) {
	for _, tc := range []struct {
		name, run, want, wantErr string
	}{
		// nixos-images' kexec-run.sh after module.nix substituted @init@
		// and @kernelParams@ (lib.escapeShellArgs: single-quoted words).
		{name: "nixos-images", run: "set -eux\ninit=\"/nix/store/abc-nixos-system-nixos-25.11/init\"\n" +
			"kernelParams=\"'console=ttyS0,115200' 'panic=30' 'boot.panic_on_fail' 'loglevel=7'\"\n" +
			"if ! sh -c \"'$SCRIPT_DIR/kexec' --load '$SCRIPT_DIR/bzImage' --command-line 'init=$init $kernelParams'\"\n",
			want: "init=/nix/store/abc-nixos-system-nixos-25.11/init console=ttyS0,115200 panic=30 boot.panic_on_fail loglevel=7"},
		{name: "nixos-images without params", run: "init=\"/nix/store/abc/init\"\nkernelParams=\"\"\n",
			want: "init=/nix/store/abc/init"},
		// images.BuildInstaller's run.
		{name: "literal", run: `"$KEXEC" --load "$here/bzImage" $syscall $extra --initrd="$here/initrd" --no-checks --command-line="console=tty0 console=ttyS0,115200 panic=30"`,
			want: "console=tty0 console=ttyS0,115200 panic=30"},
		{name: "computed", run: `kexec --load ./bzImage --command-line "$(cat /proc/cmdline)"`, wantErr: "names no kernel command line"},
		{name: "none", run: "#!/bin/sh\nexit 0\n", wantErr: "names no kernel command line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Cmdline(tc.run)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Cmdline = %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Cmdline = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestInstallerFrom takes a real installer tarball (images.BuildInstaller,
// cached by vmtests/testimg) apart and reads the archive it appended.
func TestInstallerFrom(t *testing.T) {
	inst := testimg.Installer(t)
	tb, err := kexec.Fetch(context.Background(), inst.Path, t.TempDir(), "", nil, nil)
	if err != nil {
		t.Fatalf("kexec.Fetch: %v", err)
	}
	dir := t.TempDir()
	in, err := InstallerFrom(tb, dir)
	if err != nil {
		t.Fatalf("InstallerFrom: %v", err)
	}
	if want := inst.Cmdline + ""; want != "" && !strings.HasPrefix(in.Cmdline, want) {
		t.Errorf("Cmdline = %q, want the tarball's %q", in.Cmdline, want)
	}
	if !strings.Contains(in.Cmdline, "console=ttyS0") {
		t.Errorf("Cmdline = %q has no serial console", in.Cmdline)
	}
	kernel, _ := os.ReadFile(in.Kernel)
	orig, _ := os.ReadFile(filepath.Join(tb.Dir, "kexec", "bzImage"))
	if len(kernel) == 0 || !bytes.Equal(kernel, orig) {
		t.Errorf("kernel: %d bytes, want the tarball's %d", len(kernel), len(orig))
	}
	initrd, _ := os.ReadFile(in.Initrd)
	origInitrd, _ := os.ReadFile(filepath.Join(tb.Dir, "kexec", "initrd"))
	if !bytes.HasPrefix(initrd, origInitrd) || len(initrd) == len(origInitrd) {
		t.Fatalf("initrd: %d bytes, want the tarball's %d and an archive after them", len(initrd), len(origInitrd))
	}
	if b, _ := os.ReadFile(filepath.Join(tb.Dir, "kexec", "initrd")); !bytes.Equal(b, origInitrd) {
		t.Errorf("the tarball's own initrd changed")
	}
	got := appended(t, initrd[len(origInitrd):])
	if want := string(ssh.MarshalAuthorizedKey(in.Signer.PublicKey())); got["ssh/authorized_keys"] != want {
		t.Errorf("ssh/authorized_keys = %q, want the access key %q", got["ssh/authorized_keys"], want)
	}
	host, err := ssh.ParsePrivateKey([]byte(got["ssh/ssh_host_ed25519_key"]))
	if err != nil {
		t.Fatalf("ssh/ssh_host_ed25519_key: %v", err)
	}
	if !bytes.Equal(host.PublicKey().Marshal(), in.HostKey.Marshal()) {
		t.Errorf("the host key carried is not the one the run pins")
	}
	for _, f := range []string{"addrs.json", "routes-v4.json", "routes-v6.json"} {
		if strings.TrimSpace(got[f]) != "[]" {
			t.Errorf("%s = %q, want []", f, got[f])
		}
	}
}

// appended reads a gzip newc archive into name -> content.
func appended(t *testing.T, b []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the appended archive is no gzip: %v", err)
	}
	r := cpio.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("cpio: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("cpio %s: %v", h.Name, err)
		}
		out[h.Name] = string(data)
	}
}
