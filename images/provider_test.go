package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/images/cpio"
)

// testKeys returns a host key and an authorized_keys line.
func testKeys(t *testing.T) (HostKey, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	hk, err := ParseHostKey(pem.EncodeToMemory(block))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	return hk, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

func needHostParts(t *testing.T) {
	t.Helper()
	if _, err := HostKernel(""); err != nil {
		t.Skip(err)
	}
	for _, f := range []string{"/bin/busybox", "/usr/sbin/sshd", "/usr/bin/sudo", "/usr/sbin/kexec"} {
		if _, err := os.Stat(f); err != nil {
			t.Skip("missing host part: ", err)
		}
	}
}

type archiveEntry struct {
	h    *cpio.Header
	data []byte
}

func readInitrd(t *testing.T, p string) map[string]archiveEntry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	out := map[string]archiveEntry{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var data []byte
		if h.Mode&cpio.TypeMask == cpio.TypeReg && h.Size < 1<<16 {
			data, _ = io.ReadAll(r)
		}
		out[h.Name] = archiveEntry{h, data}
	}
	return out
}

func TestBuildProviderContents(t *testing.T) {
	needHostParts(t)
	hk, auth := testKeys(t)
	dir := t.TempDir()
	p, err := BuildProvider(context.Background(), dir, ProviderOptions{
		HostKeys: []HostKey{hk}, RootAuthorizedKeys: []string{auth},
		User: "alice", UserPassword: "s3cret", Cmdline: "sysctl.kernel.kexec_load_disabled=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Cmdline, "console=ttyS0 panic=-1 sysctl.kernel.kexec_load_disabled=1"; got != want {
		t.Errorf("Cmdline = %q, want %q", got, want)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "cmdline")); strings.TrimSpace(string(data)) != p.Cmdline {
		t.Errorf("DIR/cmdline = %q, want %q", data, p.Cmdline)
	}
	if st, err := os.Stat(p.Kernel); err != nil || st.Size() < 1<<20 {
		t.Errorf("kernel %s: %v", p.Kernel, err)
	}
	files := readInitrd(t, p.Initrd)
	checks := []struct {
		name string
		ok   func(e archiveEntry) bool
	}{
		{"init", func(e archiveEntry) bool { return e.h.Linkname == "/usr/bin/busybox" }},
		{"usr/bin/sh", func(e archiveEntry) bool { return e.h.Linkname == "dash" }},
		{"usr/sbin/sshd", func(e archiveEntry) bool { return e.h.Mode&0o111 != 0 }},
		{"usr/lib64/ld-linux-x86-64.so.2", func(e archiveEntry) bool { return e.h.Size > 0 }},
		{"usr/lib/x86_64-linux-gnu/libcrypto.so.3", func(e archiveEntry) bool { return e.h.Size > 0 }},
		{"usr/bin/ip", func(e archiveEntry) bool { return e.h.Mode&cpio.TypeMask == cpio.TypeReg }},
		{"usr/sbin/kexec", func(e archiveEntry) bool { return e.h.Mode&cpio.TypeMask == cpio.TypeReg }},
		{"usr/bin/sudo", func(e archiveEntry) bool { return e.h.Mode&0o4000 != 0 && e.h.UID == 0 }},
		{"etc/sudoers", func(e archiveEntry) bool { return e.h.Mode&0o777 == 0o440 }},
		{"dev/console", func(e archiveEntry) bool { return e.h.Mode&cpio.TypeMask == cpio.TypeChar }},
		{"etc/ssh/ssh_host_ed25519_key", func(e archiveEntry) bool {
			return bytes.Equal(e.data, hk.PrivatePEM) && e.h.Mode&0o077 == 0
		}},
		{"etc/ssh/ssh_host_ed25519_key.pub", func(e archiveEntry) bool { return strings.TrimSpace(string(e.data)) == hk.PublicLine }},
		{"root/.ssh/authorized_keys", func(e archiveEntry) bool { return strings.TrimSpace(string(e.data)) == auth }},
		{"home/alice/.ssh/authorized_keys", func(e archiveEntry) bool { return strings.TrimSpace(string(e.data)) == auth }},
		{"etc/shadow", func(e archiveEntry) bool {
			return strings.Contains(string(e.data), "alice:$6$") && !strings.Contains(string(e.data), "s3cret")
		}},
		{"etc/group", func(e archiveEntry) bool { return strings.Contains(string(e.data), "sudo:x:27:alice\n") }},
	}
	for _, c := range checks {
		e, ok := files[c.name]
		if !ok {
			t.Errorf("initrd lacks %s", c.name)
			continue
		}
		if !c.ok(e) {
			t.Errorf("initrd %s = %+v (data %q): wrong", c.name, *e.h, e.data)
		}
	}
	// Modules are listed after their dependencies.
	load := string(files["etc/modules-load"].data)
	if i, j := strings.Index(load, "/virtio_ring.ko"), strings.Index(load, "/virtio_blk.ko"); i < 0 || j < 0 || i > j {
		t.Errorf("etc/modules-load = %q, want virtio_ring before virtio_blk", load)
	}
	for _, line := range strings.Fields(load) {
		if _, ok := files[strings.TrimPrefix(line, "/")]; !ok {
			t.Errorf("etc/modules-load names %s, which the initrd lacks", line)
		}
	}
}

func TestBuildProviderRejectsBadOptions(t *testing.T) {
	hk, auth := testKeys(t)
	tests := []struct {
		name string
		opts ProviderOptions
		want string
	}{
		{"no host key", ProviderOptions{RootAuthorizedKeys: []string{auth}}, "host key"},
		{"bad authorized key", ProviderOptions{HostKeys: []HostKey{hk}, RootAuthorizedKeys: []string{"ssh-ed25519 not-base64"}}, "authorized key 1"},
		{"bad user name", ProviderOptions{HostKeys: []HostKey{hk}, User: "Bad User"}, "invalid user name"},
		{"root as user", ProviderOptions{HostKeys: []HostKey{hk}, User: "root"}, "invalid user name"},
		{"password without user", ProviderOptions{HostKeys: []HostKey{hk}, UserPassword: "x"}, "without a user"},
		{"bad compression", ProviderOptions{HostKeys: []HostKey{hk}, Compression: "lz5"}, "unknown compression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BuildProvider(context.Background(), t.TempDir(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("BuildProvider error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := ParseHostKey([]byte("not a key")); err == nil {
		t.Errorf("ParseHostKey(garbage) = nil error")
	}
}

// TestBuildProviderAccessVariants: the provider can look like the VPSes
// users start from: keys only (the default), a mailed root password with
// no key at all, a Debian-style image whose root may not log in, sshd on
// another port.
func TestBuildProviderAccessVariants(t *testing.T) {
	needHostParts(t)
	hk, auth := testKeys(t)
	for _, tc := range []struct {
		name       string
		opts       ProviderOptions
		wantConfig []string // sshd_config lines
		rootHash   bool     // root has a password in /etc/shadow
		rootKeys   string
	}{
		{"keys only", ProviderOptions{RootAuthorizedKeys: []string{auth}},
			[]string{"Port 22", "PermitRootLogin prohibit-password", "PasswordAuthentication no"}, false, auth + "\n"},
		{"root password, no key", ProviderOptions{RootPassword: "root-pw", PasswordLogin: true},
			[]string{"Port 22", "PermitRootLogin yes", "PasswordAuthentication yes"}, true, ""},
		{"debian-style sudo user", ProviderOptions{User: "admin", UserPassword: "pw", UserAuthorizedKeys: []string{auth}, PermitRootLogin: "no"},
			[]string{"Port 22", "PermitRootLogin no", "PasswordAuthentication no"}, false, ""},
		{"sshd on 2222", ProviderOptions{RootAuthorizedKeys: []string{auth}, SSHPort: 2222},
			[]string{"Port 2222", "PermitRootLogin prohibit-password", "PasswordAuthentication no"}, false, auth + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.HostKeys, o.OnlyGivenHostKeys = []HostKey{hk}, true
			p, err := BuildProvider(t.Context(), t.TempDir(), o)
			if err != nil {
				t.Fatal(err)
			}
			files := readInitrd(t, p.Initrd)
			cfg := string(files["etc/ssh/sshd_config"].data)
			for _, want := range tc.wantConfig {
				if !strings.Contains(cfg, "\n"+want+"\n") && !strings.HasPrefix(cfg, want+"\n") {
					t.Errorf("sshd_config lacks %q:\n%s", want, cfg)
				}
			}
			shadow := string(files["etc/shadow"].data)
			if got := strings.Contains(shadow, "root:$6$"); got != tc.rootHash {
				t.Errorf("root has a password hash: got %v, want %v:\n%s", got, tc.rootHash, shadow)
			}
			if strings.Contains(shadow, "root-pw") {
				t.Errorf("/etc/shadow holds the password in clear")
			}
			if got := string(files["root/.ssh/authorized_keys"].data); got != tc.rootKeys {
				t.Errorf("root's authorized_keys = %q, want %q", got, tc.rootKeys)
			}
		})
	}
	if _, err := BuildProvider(t.Context(), t.TempDir(), ProviderOptions{HostKeys: []HostKey{hk}, PermitRootLogin: "maybe"}); err == nil || !strings.Contains(err.Error(), "PermitRootLogin") {
		t.Errorf("PermitRootLogin maybe: error %v, want one naming PermitRootLogin", err)
	}
}
