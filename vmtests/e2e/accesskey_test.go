package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/testutil"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
)

// keyLineRE finds the throwaway key's line in nixos-via's output.
var keyLineRE = regexp.MustCompile(`added this run's throwaway key to (\S+(?: and \S+)*) \((ssh-ed25519 (\S+) (nixos-via-\S+))\)`)

// TestInstallPasswordOnlyRoot: a VPS whose provider mailed a root
// password and authorized no key at all. nixos-via logs in with
// --env-password, adds a throwaway key to root's authorized_keys (which
// kexec/run carries into the installer), installs through it, and the
// installed system's disk does not hold that key.
func TestInstallPasswordOnlyRoot(t *testing.T) {
	w := setup(t)
	prov := testimg.ProviderVariant(t, w.keys, testimg.Variant{NoKeys: true, RootPassword: true})
	w.provDisk = providerDisk(t, prov.Kernel, prov.Initrd, prov.Cmdline)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	m := w.boot(t, "efi-ext4", 1, 512)
	// -i KEY stays: the user has a key, the provider just does not know it.
	out := mustSucceed(t, ctx, m, "", map[string]string{"SSHPASS": testimg.RootPassword}, w.installArgs(m, "efi-ext4", "--env-password")...)
	if strings.Contains(out, testimg.RootPassword) {
		t.Errorf("nixos-via printed the password")
	}
	match := keyLineRE.FindStringSubmatch(out)
	if match == nil {
		t.Fatalf("nixos-via did not say it added a throwaway key:\n%s", out)
	}
	t.Log(match[0])
	if got, want := match[1], "/root/.ssh/authorized_keys"; got != want {
		t.Errorf("throwaway key added to %s, want %s", got, want)
	}
	checkInstalled(t, ctx, w, m, "efi-ext4", out)
	stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	m.v.Stop(stopCtx)
	for _, needle := range []string{match[3], match[4]} {
		if found, err := testutil.FileContains(m.v.DiskPaths[0], []byte(needle)); err != nil || found {
			t.Errorf("the installed disk holds the throwaway key's %q (found=%v, err=%v)", needle, found, err)
		}
	}
}

// TestInstallPasswordSudoUserOnPort2222: a Debian-style VPS whose root may
// not log in, whose admin alice has a password and no key, and whose sshd
// listens on 2222. nixos-via logs in as alice with --env-password, becomes
// root with sudo, adds the throwaway key to alice's and root's
// authorized_keys, finds the installer on the port given by
// --post-kexec-ssh-port, and the installed disk does not hold the key.
func TestInstallPasswordSudoUserOnPort2222(t *testing.T) {
	const port = 2222 // the provider's sshd, forwarded from the same port here
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Skipf("port %d is in use here, and the provider's sshd is forwarded from there: %v", port, err)
	}
	l.Close()
	w := setup(t)
	prov := testimg.ProviderVariant(t, w.keys, testimg.Variant{NoKeys: true, PasswordLogin: true, NoRootLogin: true, SSHPort: port})
	w.provDisk = providerDisk(t, prov.Kernel, prov.Initrd, prov.Cmdline)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	m := w.bootWithForwards(t, "sudo-user", 1, 512, []int{port})
	// The provider answers on 2222 with the test host key; the installer
	// and the installed system on the VM's main forward (guest port 22).
	kh, err := os.ReadFile(m.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	kh = append(kh, fmt.Sprintf("[127.0.0.1]:%d %s\n", port, w.keys.HostKey.PublicLine)...)
	if err := os.WriteFile(m.knownHosts, kh, 0o600); err != nil {
		t.Fatal(err)
	}
	args := w.installArgs(m, "sudo-user", "--env-password", "--sudo-password-env", "VIA_SUDO_PW", "--post-kexec-ssh-port", fmt.Sprint(m.port))
	args[len(args)-1] = fmt.Sprintf("%s@127.0.0.1:%d", testimg.User, port)
	env := map[string]string{"SSHPASS": testimg.UserPassword, "VIA_SUDO_PW": testimg.UserPassword}
	out := mustSucceed(t, ctx, m, "", env, args...)
	if strings.Contains(out, testimg.UserPassword) {
		t.Errorf("nixos-via printed the password")
	}
	match := keyLineRE.FindStringSubmatch(out)
	if match == nil {
		t.Fatalf("nixos-via did not say it added a throwaway key:\n%s", out)
	}
	t.Log(match[0])
	if got, want := match[1], "/home/"+testimg.User+"/.ssh/authorized_keys and /root/.ssh/authorized_keys"; got != want {
		t.Errorf("throwaway key added to %s, want %s", got, want)
	}
	checkInstalled(t, ctx, w, m, "sudo-user", out)
	stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	m.v.Stop(stopCtx)
	for _, needle := range []string{match[3], match[4]} {
		if found, err := testutil.FileContains(m.v.DiskPaths[0], []byte(needle)); err != nil || found {
			t.Errorf("the installed disk holds the throwaway key's %q (found=%v, err=%v)", needle, found, err)
		}
	}
}
