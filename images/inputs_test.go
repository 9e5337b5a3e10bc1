package images

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// TestInputsOptions checks the image command line in the order it is
// checked: each bad word or file is refused with the message the command
// prints, as a usage error, except a missing kernel, the host's failure.
func TestInputsOptions(t *testing.T) {
	if _, err := HostKernel(""); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	hk, err := GenerateHostKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	key, notKey, keys := filepath.Join(dir, "key"), filepath.Join(dir, "notkey"), filepath.Join(dir, "keys")
	for f, data := range map[string]string{key: string(hk.PrivatePEM), notKey: "no key\n", keys: "# root\n\n" + hk.PublicLine + "\n"} {
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	none := filepath.Join(dir, "none")
	env := map[string]string{"PW": "secret"}
	tests := []struct {
		name      string
		installer *InstallerInputs
		provider  *ProviderInputs
		want      string // "" is no error
		usage     bool
	}{
		{"installer without out", &InstallerInputs{}, nil, "image installer: --out FILE.tar.gz is required", true},
		{"installer bad suffix", &InstallerInputs{Inputs: Inputs{Out: "x.zip"}}, nil, `image installer: --out "x.zip": want a .tar.gz file name`, true},
		{"installer missing agent", &InstallerInputs{Inputs: Inputs{Out: "x.tgz"}, Agent: none}, nil, "image installer: --agent: agent " + none + ": read ELF " + none + ": open " + none + ": no such file or directory", true},
		{"installer bad compression", &InstallerInputs{Inputs: Inputs{Out: "x.tar.gz", Compression: "lz5"}}, nil, `image: --compression: unknown compression "lz5" (want gzip, zstd or none)`, true},
		{"installer unknown kernel", &InstallerInputs{Inputs: Inputs{Out: "x.tar.gz", KernelVersion: "0.0-none"}}, nil, "image: kernel 0.0-none: stat /boot/vmlinuz-0.0-none: no such file or directory", false},
		{"installer missing host key", &InstallerInputs{Inputs: Inputs{Out: "x.tar.gz", HostKeyFiles: []string{none}}}, nil, "image: --host-key: open " + none + ": no such file or directory", true},
		{"installer bad host key", &InstallerInputs{Inputs: Inputs{Out: "x.tar.gz", HostKeyFiles: []string{key, notKey}}}, nil, "image: --host-key " + notKey + ": parse host key: ssh: no key found", true},
		{"installer missing authorized keys", &InstallerInputs{Inputs: Inputs{Out: "x.tar.gz", AuthorizedKeys: none}}, nil, "image: --authorized-keys: open " + none + ": no such file or directory", true},
		{"installer ok", &InstallerInputs{Inputs: Inputs{Out: "x.tar.gz", HostKeyFiles: []string{key}, AuthorizedKeys: keys}}, nil, "", false},
		{"provider without out", nil, &ProviderInputs{Inputs: Inputs{HostKeyFiles: []string{key}}}, "image provider: --out DIR is required", true},
		{"provider without host key", nil, &ProviderInputs{Inputs: Inputs{Out: dir}}, "image provider: at least one --host-key FILE is required", true},
		{"provider password without user", nil, &ProviderInputs{Inputs: Inputs{Out: dir, HostKeyFiles: []string{key}}, UserPasswordEnv: "PW"}, "image provider: --user-password-env and --user-authorized-keys need --user", true},
		{"provider keys without user", nil, &ProviderInputs{Inputs: Inputs{Out: dir, HostKeyFiles: []string{key}}, UserAuthorizedKeys: keys}, "image provider: --user-password-env and --user-authorized-keys need --user", true},
		{"provider password unset", nil, &ProviderInputs{Inputs: Inputs{Out: dir, HostKeyFiles: []string{key}}, User: "alice", UserPasswordEnv: "NONE"}, "image provider: --user-password-env: $NONE is empty or unset", true},
		{"provider bad host key first", nil, &ProviderInputs{Inputs: Inputs{Out: dir, HostKeyFiles: []string{notKey}}, User: "alice", UserAuthorizedKeys: none}, "image: --host-key " + notKey + ": parse host key: ssh: no key found", true},
		{"provider missing user keys", nil, &ProviderInputs{Inputs: Inputs{Out: dir, HostKeyFiles: []string{key}}, User: "alice", UserAuthorizedKeys: none}, "image provider: --user-authorized-keys: open " + none + ": no such file or directory", true},
		{"provider ok", nil, &ProviderInputs{Inputs: Inputs{Out: dir, HostKeyFiles: []string{key}, AuthorizedKeys: keys, Compression: "zstd"}, User: "alice", UserPasswordEnv: "PW", UserAuthorizedKeys: keys, Hostname: "h"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.installer != nil {
				var o InstallerOptions
				o, err = tt.installer.Options()
				if err == nil && (len(o.HostKeys) != 1 || o.HostKeys[0].PublicLine != hk.PublicLine || len(o.AuthorizedKeys) != 1 || o.Kernel.Image == "") {
					t.Errorf("options = %+v, want the key, one authorized key and a kernel", o)
				}
			} else {
				var o ProviderOptions
				o, err = tt.provider.Options(func(k string) string { return env[k] })
				if err == nil && (o.UserPassword != "secret" || o.User != "alice" || len(o.UserAuthorizedKeys) != 1 || o.Compression != Zstd || o.Hostname != "h") {
					t.Errorf("options = %+v, want the user's password, keys, zstd and the host name", o)
				}
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
			var ue *phase.UsageError
			if gotUsage := errors.As(err, &ue); gotUsage != tt.usage {
				t.Errorf("usage error = %v, want %v", gotUsage, tt.usage)
			}
		})
	}
}
