package kexec

// The kexec/run contract (CONTRACT.md), checked against the real tarball
// images.BuildInstaller makes: its run is executed in a user, mount and
// network namespace of its own, with the host's files (/etc/ssh,
// authorized keys, machine-id, /etc/passwd) replaced by fixtures and a
// veth interface with fixed addresses and routes. Only kexec/kexec is a
// stand-in (it records its calls and loads nothing); kexec/libexec/kexec,
// the real one, is removed, and the user namespace has no CAP_SYS_BOOT, so
// nothing can be loaded even by mistake.
//
// NIXOS_VIA_OFFICIAL_TARBALL may name a nixos-images kexec tarball
// (nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz): the same
// contract points are then checked against its run.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/nixos-via/nixos-via/images"
	"github.com/nixos-via/nixos-via/images/cpio"
	"github.com/nixos-via/nixos-via/internal/sshtest"
)

// flavour is a tarball whose run is checked.
type flavour struct {
	name    string
	tarball string
	cmdline string // what --command-line must carry ("" unknown)
	ours    bool   // built by images.BuildInstaller (self-contained run)
}

var ourBuild struct {
	once    sync.Once
	path    string
	cmdline string
	err     error
	skip    string
}

// ourTarball builds the installer once per test binary, with /bin/busybox
// (static) standing in for the agent: the run does not use it.
func ourTarball(t *testing.T) flavour {
	t.Helper()
	ourBuild.once.Do(func() {
		if _, err := images.HostKernel(""); err != nil {
			ourBuild.skip = err.Error()
			return
		}
		for _, f := range []string{"/bin/busybox", "/usr/sbin/sshd", "/usr/sbin/kexec", "/usr/bin/ip"} {
			if _, err := os.Stat(f); err != nil {
				ourBuild.skip = f + " missing (install busybox-static openssh-server kexec-tools iproute2)"
				return
			}
		}
		dir, err := os.MkdirTemp("", "nixos-via-contract-")
		if err != nil {
			ourBuild.err = err
			return
		}
		p := filepath.Join(dir, "nixos-kexec-installer.tar.gz")
		inst, err := images.BuildInstaller(t.Context(), p, images.InstallerOptions{Agent: "/bin/busybox"})
		if err != nil {
			ourBuild.err = fmt.Errorf("build the installer: %w", err)
			return
		}
		ourBuild.path, ourBuild.cmdline = p, inst.Cmdline
	})
	if ourBuild.skip != "" {
		t.Skip(ourBuild.skip)
	}
	if ourBuild.err != nil {
		t.Fatal(ourBuild.err)
	}
	return flavour{name: "ours", tarball: ourBuild.path, cmdline: ourBuild.cmdline, ours: true}
}

// TestMain removes the tarball ourTarball built.
func TestMain(m *testing.M) {
	code := m.Run()
	if ourBuild.path != "" {
		os.RemoveAll(filepath.Dir(ourBuild.path))
	}
	os.Exit(code)
}

func flavours(t *testing.T) []flavour {
	fl := []flavour{ourTarball(t)}
	if p := os.Getenv("NIXOS_VIA_OFFICIAL_TARBALL"); p != "" {
		fl = append(fl, flavour{name: "nixos-images", tarball: p})
	} else {
		t.Log("NIXOS_VIA_OFFICIAL_TARBALL not set: only our tarball is checked")
	}
	return fl
}

// fakeKexec records every call (one line: call<TAB>arg...; then the
// working directory and TMPDIR) and fails --load while @FAIL@ exists.
const fakeKexec = `#!/bin/sh
# TEST STAND-IN for kexec (kexec/contract_test.go): records how run calls
# it and never loads a kernel.
{
	printf 'call'
	for a in "$@"; do printf '\t%s' "$a"; done
	printf '\ncwd\t%s\ntmpdir\t%s\n' "$(pwd)" "${TMPDIR-}"
} >> @LOG@
if [ "$1" = --load ] && [ -e @FAIL@ ]; then
	echo "kexec_load failed: Operation not permitted" >&2
	exit 1
fi
exit 0
`

// unpacked is a tarball unpacked as nixos-anywhere and nixos-via do
// (dir/kexec/...), with the stand-in kexec.
type unpacked struct {
	dir, log, fail string
	initrdBytes    int64
}

func unpackWithFakeKexec(t *testing.T, tarball string) unpacked {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-C", dir, "-xzf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", tarball, err, out)
	}
	u := unpacked{dir: dir, log: filepath.Join(t.TempDir(), "kexec.log"), fail: filepath.Join(t.TempDir(), "fail")}
	// The real kexec goes: only the stand-in may run.
	if err := os.RemoveAll(filepath.Join(dir, "kexec", "libexec", "kexec")); err != nil {
		t.Fatal(err)
	}
	fake := strings.NewReplacer("@LOG@", u.log, "@FAIL@", u.fail).Replace(fakeKexec)
	p := filepath.Join(dir, "kexec", "kexec")
	if err := os.Remove(p); err != nil {
		t.Fatalf("the tarball has no kexec/kexec: %v", err)
	}
	if err := os.WriteFile(p, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != fake {
		t.Fatalf("kexec/kexec is not the stand-in (%v): refusing to run", err)
	}
	st, err := os.Stat(filepath.Join(dir, "kexec", "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	u.initrdBytes = st.Size()
	return u
}

// calls are the stand-in's recorded calls.
type kexecCall struct {
	args        []string
	cwd, tmpdir string
}

func (u unpacked) calls(t *testing.T) []kexecCall {
	t.Helper()
	data, err := os.ReadFile(u.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []kexecCall
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f := strings.Split(line, "\t")
		switch f[0] {
		case "call":
			out = append(out, kexecCall{args: f[1:]})
		case "cwd":
			out[len(out)-1].cwd = f[1]
		case "tmpdir":
			out[len(out)-1].tmpdir = f[1]
		}
	}
	return out
}

// Host fixtures.
const (
	fixMAC       = "52:54:00:12:34:56"
	fixMachineID = "0123456789abcdef0123456789abcdef"
	// root's file as cloud images write it: an option prefix that only
	// prints a message, then the key.
	fixRootKey    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRootKeyOfTheOldHost root@old"
	fixRootLine   = `no-port-forwarding,command="echo 'Please login as the user \"alice\" rather than the user \"root\".';echo;sleep 10;exit 142" ` + fixRootKey
	fixRootKey2   = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABRootKeyTwo root2@old"
	fixAliceKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAliceKey alice@laptop"
	fixAliceLine  = "no-pty " + fixAliceKey
	fixNixosRoot  = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tNixosRoot root-nixos"
	fixNixosAlice = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYNixosAlice alice-nixos"
	fixOtherKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBobKey bob@elsewhere"
)

var fixHostKeys = map[string]string{
	"ssh_host_ed25519_key":     "FIXTURE ED25519 PRIVATE KEY\n",
	"ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostEd25519 root@old\n",
	"ssh_host_rsa_key":         "FIXTURE RSA PRIVATE KEY\n",
	"ssh_host_rsa_key.pub":     "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABHostRSA root@old\n",
}

// hostFixture writes the fake /etc, /root and /home.
func hostFixture(t *testing.T) string {
	t.Helper()
	fix := t.TempDir()
	files := map[string]string{
		"etc/passwd":                        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
		"etc/machine-id":                    fixMachineID + "\n",
		"etc/resolv.conf":                   "# fixture\nnameserver 192.0.2.53\nsearch example.test\n",
		"etc/ssh/authorized_keys.d/root":    fixNixosRoot + "\n",
		"etc/ssh/authorized_keys.d/alice":   fixNixosAlice + "\n",
		"root/.ssh/authorized_keys":         fixRootLine + "\n",
		"root/.ssh/authorized_keys2":        fixRootKey2 + "\n",
		"home/alice/.ssh/authorized_keys":   fixAliceLine + "\n",
		"home/bob/.ssh/authorized_keys":     fixOtherKey + "\n",
		"etc/ssh/sshd_config":               "# not a host key\n",
		"etc/ssh/ssh_known_hosts":           "# not a host key either\n",
		"home/alice/.ssh/authorized_keys.x": fixOtherKey + "\n",
	}
	for name, data := range fixHostKeys {
		files["etc/ssh/"+name] = data
	}
	for name, data := range files {
		p := filepath.Join(fix, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "_key") {
			mode = 0o600
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	return fix
}

// nsSetup builds the namespace's network and host files, then runs the
// command in "$@" from $CWD with only the variables in $RUNENV.
const nsSetup = `set -e
ip link add eth0 type veth peer name peer0
ip link set eth0 address ` + fixMAC + `
ip link set peer0 up
ip link set eth0 up
ip addr add 192.0.2.10/24 dev eth0
ip -6 addr add 2001:db8::10/64 dev eth0 nodad
ip route add default via 192.0.2.1 dev eth0
ip route add 198.51.100.0/24 via 192.0.2.254 dev eth0 proto static
ip -6 route add default via 2001:db8::1 dev eth0
mount --bind "$FIX/root" /root
mount --bind "$FIX/home" /home
mount --bind "$FIX/etc" /etc
cd "$CWD"
exec /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin $RUNENV "$@"
`

func needNamespaces(t *testing.T) {
	t.Helper()
	out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "--net", "sh", "-c",
		"ip link add va0 type veth peer name vb0 && mount -t tmpfs t /mnt && id -u").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Skipf("cannot make user, mount and network namespaces with a veth pair here: %v: %s", err, out)
	}
}

// runInNamespace runs the unpacked run with args as (namespace) root,
// from cwd, with env ("K=V" words), and returns its combined output and
// exit status.
func runInNamespace(t *testing.T, fix, cwd string, env []string, argv ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("unshare", append([]string{"--user", "--map-root-user", "--mount", "--net", "sh", "-c", nsSetup, "setup"}, argv...)...)
	cmd.Env = append(os.Environ(), "FIX="+fix, "CWD="+cwd, "RUNENV="+strings.Join(env, " "))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		return out.String(), 0
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("run did not return within 2 minutes (its output must not stay tied to a background kexec -e)\n%s", out.String())
		return "", -1
	}
}

// appended reads the archive run appended to the initrd (one more gzip'd
// newc cpio after the original bytes): entry name -> content ("" for
// directories).
func (u unpacked) appended(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(u.dir, "kexec", "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) <= u.initrdBytes {
		t.Fatalf("kexec/initrd did not grow (%d bytes, %d before)", len(data), u.initrdBytes)
	}
	if !bytes.Equal(data[u.initrdBytes:u.initrdBytes+2], []byte{0x1f, 0x8b}) {
		t.Fatalf("what run appended does not start as gzip: % x", data[u.initrdBytes:u.initrdBytes+4])
	}
	zr, err := gzip.NewReader(bytes.NewReader(data[u.initrdBytes:]))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	r := cpio.NewReader(zr)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the appended archive: %v", err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(h.Name, "./")] = string(b)
	}
	return out
}

func contains(args []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(args, w) {
			return false
		}
	}
	return true
}

// TestRunContract runs each tarball's run as nixos-anywhere and nixos-via
// call it and checks every point of CONTRACT.md that run itself answers
// for.
func TestRunContract(t *testing.T) {
	needNamespaces(t)
	for _, fl := range flavours(t) {
		t.Run(fl.name, func(t *testing.T) {
			fix := hostFixture(t)
			tests := []struct {
				name    string
				env     []string
				rel     bool // ./kexec/run from the tarball's parent (nixos-via), else the absolute path (nixos-anywhere)
				args    []string
				fail    bool // kexec --load fails
				wantOK  bool
				wantKey []string // keys carried (sudo user's included)
				notKey  []string
			}{
				{name: "sudo user, as nixos-anywhere", env: []string{"SUDO_USER=alice"}, args: []string{"--kexec-extra-flags", "--no-sync --reset-vga"}, wantOK: true,
					wantKey: []string{fixRootKey, fixRootKey2, fixNixosRoot, fixAliceKey, fixNixosAlice}, notKey: []string{fixOtherKey, "Please login"}},
				{name: "doas user, as nixos-via", env: []string{"DOAS_USER=alice"}, rel: true, args: []string{"--kexec-extra-flags", ""}, wantOK: true,
					wantKey: []string{fixRootKey, fixAliceKey, fixNixosAlice}, notKey: []string{fixOtherKey}},
				{name: "root login", rel: true, args: []string{"--kexec-extra-flags", "--no-sync"}, wantOK: true,
					wantKey: []string{fixRootKey, fixRootKey2, fixNixosRoot}, notKey: []string{fixAliceKey, fixNixosAlice}},
				{name: "kexec --load fails", env: []string{"SUDO_USER=alice"}, args: []string{"--kexec-extra-flags", ""}, fail: true},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					u := unpackWithFakeKexec(t, fl.tarball)
					if tc.fail {
						os.WriteFile(u.fail, nil, 0o644)
					}
					run := filepath.Join(u.dir, "kexec", "run")
					if tc.rel {
						run = "./kexec/run"
					}
					env := append([]string{"TMPDIR=" + u.dir}, tc.env...)
					out, code := runInNamespace(t, fix, u.dir, env, append([]string{"sh", run}, tc.args...)...)
					calls := u.calls(t)
					if !tc.wantOK {
						if code == 0 || strings.Contains(out, Marker) {
							t.Errorf("exit %d, marker printed %v; want a non-zero exit and no marker\n%s", code, strings.Contains(out, Marker), out)
						}
						if got, want := len(calls), 1; got != want {
							t.Errorf("kexec calls = %d, want %d (only the failed --load)", got, want)
						}
						if !strings.Contains(out, "kexec_load failed: Operation not permitted") {
							t.Errorf("the output does not carry kexec's own message:\n%s", out)
						}
						return
					}
					if code != 0 || !strings.Contains(out, Marker) {
						t.Fatalf("exit %d, marker printed %v; want 0 and %q\n%s", code, strings.Contains(out, Marker), Marker, out)
					}
					checkLoad(t, fl, u, calls, extraOf(tc.args))
					checkArchive(t, fl, u.appended(t), tc.wantKey, tc.notKey)
					// kexec -e comes about 6 s later, in the background,
					// with the same extra flags.
					deadline := time.Now().Add(15 * time.Second)
					for len(calls) < 2 && time.Now().Before(deadline) {
						time.Sleep(250 * time.Millisecond)
						calls = u.calls(t)
					}
					if len(calls) != 2 {
						t.Fatalf("kexec calls = %v; want --load, then -e in the background", calls)
					}
					want := append([]string{"-e"}, strings.Fields(extraOf(tc.args))...)
					if got := calls[1].args; !slices.Equal(got, want) {
						t.Errorf("the background call = %q, want %q", got, want)
					}
				})
			}
		})
	}
}

func extraOf(args []string) string {
	for i, a := range args {
		if a == "--kexec-extra-flags" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// checkLoad checks the --load call: the tarball's own kernel and (grown)
// initrd, the extra flags split into words, the syscall choice for this
// kernel, the command line.
func checkLoad(t *testing.T, fl flavour, u unpacked, calls []kexecCall, extra string) {
	t.Helper()
	if len(calls) == 0 || calls[0].args[0] != "--load" {
		t.Fatalf("kexec calls = %v, want --load first", calls)
	}
	args := calls[0].args
	kdir := filepath.Join(u.dir, "kexec")
	if !contains(args, filepath.Join(kdir, "bzImage"), "--initrd="+filepath.Join(kdir, "initrd"), "--no-checks") {
		t.Errorf("--load args = %q, want the tarball's bzImage, --initrd=its initrd, --no-checks", args)
	}
	if !contains(args, strings.Fields(extra)...) {
		t.Errorf("--load args = %q, want the extra flags %q as words", args, extra)
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	auto := kernelAtLeast61(strings.TrimSpace(string(kernel)))
	if got := slices.Contains(args, "--kexec-syscall-auto"); got != auto {
		t.Errorf("--kexec-syscall-auto given %v on kernel %s, want %v", got, strings.TrimSpace(string(kernel)), auto)
	}
	cl := ""
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--command-line="); ok {
			cl = v
		} else if a == "--command-line" && i+1 < len(args) {
			cl = args[i+1]
		}
	}
	if fl.cmdline != "" && cl != fl.cmdline {
		t.Errorf("--command-line = %q, want %q", cl, fl.cmdline)
	}
	if cl == "" {
		t.Errorf("--load args = %q: no --command-line", args)
	}
}

func kernelAtLeast61(release string) bool {
	var major, minor int
	fmt.Sscanf(release, "%d.%d", &major, &minor)
	return major > 6 || major == 6 && minor >= 1
}

// checkArchive checks the appended archive's contract entries (and ours
// extra ones for our tarball).
func checkArchive(t *testing.T, fl flavour, a map[string]string, wantKeys, notKeys []string) {
	t.Helper()
	for name, data := range fixHostKeys {
		if got := a["ssh/"+name]; got != data {
			t.Errorf("ssh/%s = %q, want the host's %q", name, got, data)
		}
	}
	for name := range a {
		if strings.HasPrefix(name, "ssh/") && name != "ssh/authorized_keys" && !strings.HasPrefix(name, "ssh/ssh_host_") {
			t.Errorf("the archive has %s, which is not a host key", name)
		}
	}
	keys := a["ssh/authorized_keys"]
	for _, k := range wantKeys {
		if !slices.Contains(strings.Split(keys, "\n"), k) {
			t.Errorf("ssh/authorized_keys lacks the line %q:\n%s", k, keys)
		}
	}
	for _, k := range notKeys {
		if strings.Contains(keys, k) {
			t.Errorf("ssh/authorized_keys has %q:\n%s", k, keys)
		}
	}
	if got, want := strings.TrimSpace(a["machine-id"]), fixMachineID; got != want {
		t.Errorf("machine-id = %q, want %q", got, want)
	}
	var addrs []struct {
		Ifname   string `json:"ifname"`
		Address  string `json:"address"`
		AddrInfo []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(a["addrs.json"]), &addrs); err != nil {
		t.Errorf("addrs.json: %v\n%s", err, a["addrs.json"])
	}
	found := map[string]bool{}
	for _, l := range addrs {
		if l.Address != fixMAC {
			continue
		}
		for _, ai := range l.AddrInfo {
			found[fmt.Sprintf("%s/%d", ai.Local, ai.Prefixlen)] = true
		}
	}
	for _, want := range []string{"192.0.2.10/24", "2001:db8::10/64"} {
		if !found[want] {
			t.Errorf("addrs.json has no %s on the interface with MAC %s:\n%s", want, fixMAC, a["addrs.json"])
		}
	}
	for file, wants := range map[string][]string{
		"routes-v4.json": {`"gateway":"192.0.2.1"`, `"dst":"198.51.100.0/24"`, `"gateway":"192.0.2.254"`},
		"routes-v6.json": {`"gateway":"2001:db8::1"`},
	} {
		var v []map[string]any
		if err := json.Unmarshal([]byte(a[file]), &v); err != nil {
			t.Errorf("%s: %v\n%s", file, err, a[file])
		}
		for _, w := range wants {
			if !strings.Contains(a[file], w) {
				t.Errorf("%s lacks %s:\n%s", file, w, a[file])
			}
		}
	}
	if !fl.ours {
		return
	}
	// Beyond the contract: what our installer's init replays.
	for _, want := range []string{"addr " + fixMAC + " -4 192.0.2.10/24", "addr " + fixMAC + " -6 2001:db8::10/64",
		"route " + fixMAC + " -4 default via 192.0.2.1", "route " + fixMAC + " -4 198.51.100.0/24 via 192.0.2.254 proto static",
		"route " + fixMAC + " -6 default via 2001:db8::1"} {
		if !strings.Contains(a["network/static"], want) {
			t.Errorf("network/static lacks %q:\n%s", want, a["network/static"])
		}
	}
	if got, want := a["network/resolv.conf"], "nameserver 192.0.2.53\nsearch example.test\n"; got != want {
		t.Errorf("network/resolv.conf = %q, want %q", got, want)
	}
}

// TestRunRefusals: what our run refuses before touching anything (the
// nixos-images run ignores unknown arguments and does not check for root
// itself; both are ours only).
func TestRunRefusals(t *testing.T) {
	needNamespaces(t)
	fl := ourTarball(t)
	fix := hostFixture(t)
	tests := []struct {
		name     string
		unshare  []string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"unknown argument", nil, []string{"--kexec-extra-flag", "--no-sync"}, 2, "unknown argument: --kexec-extra-flag"},
		{"flag without its value", nil, []string{"--kexec-extra-flags"}, 2, "--kexec-extra-flags needs a value"},
		{"not root", []string{"--user"}, []string{"--kexec-extra-flags", ""}, 1, "must run as root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := unpackWithFakeKexec(t, fl.tarball)
			var out string
			var code int
			if tc.unshare != nil {
				cmd := exec.Command("unshare", append(tc.unshare, append([]string{"sh", "./kexec/run"}, tc.args...)...)...)
				cmd.Dir = u.dir
				b, err := cmd.CombinedOutput()
				out = string(b)
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
			} else {
				out, code = runInNamespace(t, fix, u.dir, nil, append([]string{"sh", "./kexec/run"}, tc.args...)...)
			}
			if code != tc.wantCode || !strings.Contains(out, tc.wantMsg) || strings.Contains(out, Marker) {
				t.Errorf("exit %d, output %q; want exit %d with %q and no marker", code, out, tc.wantCode, tc.wantMsg)
			}
			if calls := u.calls(t); len(calls) != 0 {
				t.Errorf("kexec was called: %v", calls)
			}
			if st, err := os.Stat(filepath.Join(u.dir, "kexec", "initrd")); err != nil || st.Size() != u.initrdBytes {
				t.Errorf("kexec/initrd changed (%v)", err)
			}
		})
	}
}

// TestRunNeedsOnlyAShell: our run uses nothing of the host but /bin/sh
// and its builtins: with PATH empty it still does the whole job.
func TestRunNeedsOnlyAShell(t *testing.T) {
	needNamespaces(t)
	fl := ourTarball(t)
	fix := hostFixture(t)
	u := unpackWithFakeKexec(t, fl.tarball)
	out, code := runInNamespace(t, fix, u.dir, []string{"PATH=/nonexistent", "SUDO_USER=alice"}, "/bin/sh", "./kexec/run", "--kexec-extra-flags", "")
	if code != 0 || !strings.Contains(out, Marker) {
		t.Fatalf("with an empty PATH: exit %d; want 0 and the marker\n%s", code, out)
	}
	checkArchive(t, fl, u.appended(t), []string{fixRootKey, fixAliceKey}, nil)
}

// TestRunScriptCallsTheRealRun: our call of run (RunScript) over SSH, with
// the real run of our tarball: from the work directory, TMPDIR there, the
// extra flags as one argument that run splits, success only with the
// marker, and on failure run's exit status and output, run.log kept and
// the installer's files removed.
func TestRunScriptCallsTheRealRun(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads the real tarball twice over loopback SSH")
	}
	fl := ourTarball(t)
	s := sshtest.Start(t, sshtest.Options{})
	c := connectTo(t, s.Addr, s)
	tests := []struct {
		name  string
		extra string
		fail  bool
	}{
		{"loaded", "--no-sync --reset-vga", false},
		{"kexec --load fails", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			u := unpackWithFakeKexec(t, fl.tarball)
			if tc.fail {
				os.WriteFile(u.fail, nil, 0o644)
			}
			repacked := filepath.Join(t.TempDir(), "installer.tar.gz")
			if out, err := exec.Command("tar", "-C", u.dir, "-czf", repacked, "kexec").CombinedOutput(); err != nil {
				t.Fatalf("repack: %v\n%s", err, out)
			}
			tb, err := Fetch(ctx, repacked, t.TempDir(), "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			w, err := PrepareWorkDir(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(w.Path) })
			if err := Upload(ctx, c, tb, w, nil); err != nil {
				t.Fatal(err)
			}
			fake, _ := os.ReadFile(filepath.Join(u.dir, "kexec", "kexec"))
			if got, err := os.ReadFile(filepath.Join(w.Path, "kexec", "kexec")); err != nil || !bytes.Equal(got, fake) {
				t.Fatalf("the uploaded kexec/kexec is not the stand-in (%v): refusing to run", err)
			}
			out, err := RunScript(ctx, c, w, tc.extra)
			calls := u.calls(t)
			if len(calls) == 0 {
				t.Fatalf("kexec was not called; RunScript = %v\n%s", err, out)
			}
			if got := calls[0]; got.cwd != w.Path || got.tmpdir != w.Path {
				t.Errorf("run ran in %q with TMPDIR=%q, want both %q (the tarball's parent, as nixos-anywhere)", got.cwd, got.tmpdir, w.Path)
			}
			if !contains(calls[0].args, append(strings.Fields(tc.extra), filepath.Join(w.Path, "kexec", "bzImage"))...) {
				t.Errorf("--load args = %q, want the uploaded bzImage and %q as words", calls[0].args, tc.extra)
			}
			if tc.fail {
				var ke *Error
				if !errors.As(err, &ke) || ke.Step != "run" || !strings.Contains(err.Error(), "exit 1") || !strings.Contains(err.Error(), "kexec_load failed") {
					t.Fatalf("RunScript = %v, want a run *Error with exit 1 and kexec's message", err)
				}
				if _, err := os.Stat(filepath.Join(w.Path, "kexec")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the installer's files after a failed run: %v, want them removed", err)
				}
				if log, _ := os.ReadFile(filepath.Join(w.Path, "run.log")); !strings.Contains(string(log), "kexec --load failed") {
					t.Errorf("run.log = %q, want run's output", log)
				}
				return
			}
			if err != nil || !strings.Contains(out, Marker) {
				t.Fatalf("RunScript = %v\n%s; want success with the marker", err, out)
			}
			deadline := time.Now().Add(15 * time.Second)
			for len(calls) < 2 && time.Now().Before(deadline) {
				time.Sleep(250 * time.Millisecond)
				calls = u.calls(t)
			}
			if want := append([]string{"-e"}, strings.Fields(tc.extra)...); len(calls) != 2 || !slices.Equal(calls[1].args, want) {
				t.Errorf("kexec calls = %v, want the background %q after the session ended", calls, want)
			}
		})
	}
}
