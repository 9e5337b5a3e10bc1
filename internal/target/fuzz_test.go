package target

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzResolve reads an ssh_config, a destination and an --ssh-option as
// the user (or a config they copied) gives them: Resolve and the option
// check must answer or refuse, never panic, and a resolved port is one
// a dial can use.
func FuzzResolve(f *testing.F) {
	f.Add("Host web\n  HostName 203.0.113.7\n  User admin\n  Port 2222\n  ProxyJump bastion\n", "web", "ProxyCommand=nc %h %p")
	f.Add("Host *\n  IdentityFile ~/.ssh/id_%r\n  UserKnownHostsFile /dev/null ~/.ssh/kh2\n", "root@[2001:db8::1]:22", "HostKeyAlgorithms=ssh-ed25519")
	f.Add("Match host x\n  Port 0\nInclude nowhere/*\n", "alice@x:65535", "StrictHostKeyChecking accept-new")
	f.Add("Host a\n  Port 99999\n  ProxyJump b,c\nHost b\n  ProxyJump a\n", "a", "ConnectTimeout=3")
	f.Fuzz(func(t *testing.T, config, dest, opt string) {
		home := t.TempDir()
		cfg := filepath.Join(home, "config")
		if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		opts := []string{opt}
		if CheckSSHOptions(opts) != nil {
			opts = nil
		}
		res, err := Options{Destination: dest, SSHOptions: opts, SSHConfigFile: cfg,
			KnownHostsFiles: []string{filepath.Join(home, "known_hosts")}}.Resolve(home)
		if err != nil {
			return
		}
		if res.Port < 1 || res.Port > 65535 {
			t.Errorf("Resolve(%q, %q) port %d, want 1..65535\nconfig:\n%s", dest, opt, res.Port, config)
		}
	})
}
