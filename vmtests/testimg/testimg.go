// Package testimg builds the images VM tests boot (provider, installer)
// once and keeps them in a cache directory keyed by everything they are
// made from, so that repeated test runs start at once.
//
// The cache lives in $NIXOS_VIA_VM_CACHE, else in the user cache dir
// ($XDG_CACHE_HOME or ~/.cache) under nixos-via/vmtests.
package testimg

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/images"
)

// Provider login user with sudo, and its password; root's password on the
// password-only variant.
const (
	User         = "alice"
	UserPassword = "via-test-password"
	RootPassword = "via-root-password"
)

// CacheDir returns (and creates) the image cache directory.
func CacheDir() (string, error) {
	dir := os.Getenv("NIXOS_VIA_VM_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("user cache dir: %w", err)
		}
		dir = filepath.Join(base, "nixos-via", "vmtests")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// Keys are the fixed test keys: the VMs' host key and the client key.
type Keys struct {
	HostKey       images.HostKey
	HostKeyFile   string // private host key file
	ClientKeyFile string // private client key, mode 0600, for ssh -i
	ClientPub     string // authorized_keys line of the client key
}

func genKeyFile(p string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "nixos-via-vmtest")
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	if err := os.Link(tmp, p); err != nil && !os.IsExist(err) {
		os.Remove(tmp)
		return err
	}
	return os.Remove(tmp)
}

// TestKeys returns the keys, generating them once per cache directory.
func TestKeys(t testing.TB) *Keys {
	t.Helper()
	dir, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k := &Keys{HostKeyFile: filepath.Join(dir, "host_ed25519_key"), ClientKeyFile: filepath.Join(dir, "client_ed25519_key")}
	for _, p := range []string{k.HostKeyFile, k.ClientKeyFile} {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			if err := genKeyFile(p); err != nil {
				t.Fatalf("generate test key %s: %v", p, err)
			}
		}
	}
	hostPEM, err := os.ReadFile(k.HostKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if k.HostKey, err = images.ParseHostKey(hostPEM); err != nil {
		t.Fatal(err)
	}
	clientPEM, err := os.ReadFile(k.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(clientPEM)
	if err != nil {
		t.Fatalf("parse %s: %v", k.ClientKeyFile, err)
	}
	k.ClientPub = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return k
}

// inputsKey hashes what an image is built from: this test binary (the
// builder code), the kernel, the host's package database (any Debian
// package change), and the options.
func inputsKey(kind string, opts any) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", kind)
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", err
	}
	for _, p := range []string{"/var/lib/dpkg/status"} {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", p, st.Size(), st.ModTime().UnixNano())
		}
	}
	k, err := images.HostKernel("")
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(k.Image); err == nil {
		fmt.Fprintf(h, "%s %d %d\n", k.Image, st.Size(), st.ModTime().UnixNano())
	}
	enc, err := json.Marshal(opts)
	if err != nil {
		return "", err
	}
	h.Write(enc)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// cached returns dir/<kind>-<key>, running build into a fresh directory
// and renaming it into place when it is not there yet.
func cached(t testing.TB, kind string, opts any, build func(dir string) error) string {
	t.Helper()
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	key, err := inputsKey(kind, opts)
	if err != nil {
		t.Skip("cannot key the image cache: ", err)
	}
	final := filepath.Join(cache, kind+"-"+key)
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		// In use: the newest by its mark, so prune keeps it.
		now := time.Now()
		os.Chtimes(filepath.Join(final, ".complete"), now, now)
		return final
	}
	tmp, err := os.MkdirTemp(cache, "build-"+kind+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := build(tmp); err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("build %s image: %v", kind, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another test process won the race: use its copy.
		os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(final, ".complete")); serr != nil {
			t.Fatalf("cache %s: %v", final, err)
		}
	}
	prune(cache, kind, keepPerKind)
	return final
}

// keepPerKind is how many images of one kind the cache keeps; every code
// change makes a new key, so older entries are removed.
const keepPerKind = 3

// inUse is how long after its last use an entry is never pruned: test
// processes of other trees (a CI clone, a worktree) may still boot it.
const inUse = 2 * time.Hour

// prune removes all but the newest keep entries of kind, but none used
// within inUse, and abandoned build directories older than an hour.
func prune(cache, kind string, keep int) {
	entries, err := os.ReadDir(cache)
	if err != nil {
		return
	}
	type entry struct {
		path string
		mod  time.Time
	}
	var done []entry
	for _, e := range entries {
		p := filepath.Join(cache, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), "build-"):
			if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) > time.Hour {
				os.RemoveAll(p)
			}
		case strings.HasPrefix(e.Name(), kind+"-") && e.IsDir():
			if st, err := os.Stat(filepath.Join(p, ".complete")); err == nil {
				done = append(done, entry{p, st.ModTime()})
			}
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].mod.After(done[j].mod) })
	for i := keep; i < len(done); i++ {
		if time.Since(done[i].mod) > inUse {
			os.RemoveAll(done[i].path)
		}
	}
}

func needTools(t testing.TB) {
	t.Helper()
	if _, err := images.HostKernel(""); err != nil {
		t.Skip(err)
	}
	for _, f := range []string{"/bin/busybox", "/usr/sbin/sshd", "/usr/bin/sudo", "/usr/sbin/kexec", "/usr/bin/ip"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (install busybox-static openssh-server sudo kexec-tools iproute2)", f)
		}
	}
}

// providerOptions is what the cache key covers for the provider.
type providerOptions struct {
	HostKey, ClientPub, User, Password, Cmdline string
}

// Provider returns the cached provider image: the test host key, root and
// User log in with the client key, User's sudo asks for UserPassword.
// extraCmdline is appended to the kernel command line.
func Provider(t testing.TB, keys *Keys, extraCmdline string) *images.Provider {
	t.Helper()
	needTools(t)
	opts := providerOptions{keys.HostKey.PublicLine, keys.ClientPub, User, UserPassword, extraCmdline}
	dir := cached(t, "provider", opts, func(dir string) error {
		_, err := images.BuildProvider(t.Context(), dir, images.ProviderOptions{
			HostKeys: []images.HostKey{keys.HostKey}, RootAuthorizedKeys: []string{keys.ClientPub},
			User: User, UserPassword: UserPassword, Cmdline: extraCmdline,
		})
		return err
	})
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return &images.Provider{Kernel: filepath.Join(dir, "bzImage"), Initrd: filepath.Join(dir, "initrd"), Cmdline: strings.TrimSpace(string(cmdline))}
}

// Variant is a provider shaped like a kind of real VPS (DESIGN.md section
// 6, real shapes); the zero Variant is the default Provider.
type Variant struct {
	// NoKeys leaves every authorized_keys file empty: with
	// RootPassword, the only way in is root's password (a VPS whose
	// provider mailed one).
	NoKeys bool
	// RootPassword is set to testimg.RootPassword, and sshd takes it.
	RootPassword bool
	// PasswordLogin lets User log in with UserPassword over SSH.
	PasswordLogin bool
	// NoRootLogin is Debian-style: PermitRootLogin no, root has no key,
	// User logs in with the client key and becomes root with sudo.
	NoRootLogin bool
	// SSHPort is sshd's port in the guest; 0 is 22.
	SSHPort int
	Cmdline string
}

// ProviderVariant returns the cached provider image of variant v, with the
// test host key and User (sudo asks for UserPassword).
func ProviderVariant(t testing.TB, keys *Keys, v Variant) *images.Provider {
	t.Helper()
	needTools(t)
	po := images.ProviderOptions{HostKeys: []images.HostKey{keys.HostKey}, User: User, UserPassword: UserPassword,
		Cmdline: v.Cmdline, SSHPort: v.SSHPort}
	if !v.NoKeys {
		po.RootAuthorizedKeys, po.UserAuthorizedKeys = []string{keys.ClientPub}, []string{keys.ClientPub}
	} else {
		po.UserAuthorizedKeys = []string{}
	}
	if v.RootPassword {
		po.RootPassword, po.PasswordLogin = RootPassword, true
	}
	if v.PasswordLogin {
		po.PasswordLogin = true
	}
	if v.NoRootLogin {
		po.PermitRootLogin, po.RootAuthorizedKeys = "no", nil
	}
	key := struct {
		HostKey, ClientPub, User, Password string
		Variant                            Variant
	}{keys.HostKey.PublicLine, keys.ClientPub, User, UserPassword, v}
	dir := cached(t, "provider-variant", key, func(dir string) error {
		_, err := images.BuildProvider(t.Context(), dir, po)
		return err
	})
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return &images.Provider{Kernel: filepath.Join(dir, "bzImage"), Initrd: filepath.Join(dir, "initrd"), Cmdline: strings.TrimSpace(string(cmdline))}
}

// Agent builds the static nixos-via binary (CGO_ENABLED=0) from this
// module and returns its path; it is the installer's agent.
func Agent(t testing.TB) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		t.Skip("go toolchain or module not found: cannot build the agent: ", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	out := filepath.Join(t.TempDir(), "nixos-via")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/nixos-via")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the agent (go build ./cmd/nixos-via): %v\n%s", err, msg)
	}
	return out
}

func fileHash(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Installer returns the cached installer tarball built with the agent
// from Agent and the test fixtures (a stand-in nixos-generate-config).
// It bakes in no keys: everything comes from kexec/run.
func Installer(t testing.TB) *images.Installer {
	t.Helper()
	needTools(t)
	agent := Agent(t)
	sum, err := fileHash(agent)
	if err != nil {
		t.Fatal(err)
	}
	var inst *images.Installer
	fixtures := installerFixtures()
	key := struct {
		Agent    string
		Fixtures map[string]string
	}{sum, fixtures}
	dir := cached(t, "installer", key, func(dir string) error {
		var err error
		inst, err = images.BuildInstaller(t.Context(), filepath.Join(dir, "nixos-kexec-installer.tar.gz"),
			images.InstallerOptions{Agent: agent, TestFixtures: fixtures})
		return err
	})
	p := filepath.Join(dir, "nixos-kexec-installer.tar.gz")
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if inst == nil {
		inst = &images.Installer{Path: p}
	}
	inst.Path, inst.Bytes = p, st.Size()
	return inst
}
