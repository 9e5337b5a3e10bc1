package connflags

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/flagtable"
	"github.com/nixos-via/nixos-via/internal/phase"
)

func parse(t *testing.T, args ...string) (*Conn, error) {
	t.Helper()
	var c Conn
	table := append(c.Flags("Target"), c.TimeoutFlag("Output"))
	_, _, err := flagtable.Parse(table, args, c.Host)
	return &c, err
}

func TestFlags(t *testing.T) {
	c, err := parse(t, "-i", "/k", "-p", "2222", "--host-key", "SHA256:a", "--host-key", "SHA256:b", "--timeout-connect", "30s", "admin@h")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"Destination", c.Destination, "admin@h"},
		{"IdentityFiles", strings.Join(c.IdentityFiles, ","), "/k"},
		{"Port", c.Port, 2222},
		{"HostKeyPin", c.HostKeyPin, "SHA256:a"},
		{"HostKeyPins", strings.Join(c.HostKeyPins, ","), "SHA256:a,SHA256:b"},
		{"Timeout", c.Timeout, 30 * time.Second},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestFlagsRefuse(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--host-key", "abc", "h"}, `--host-key "abc": want a SHA256:`},
		{[]string{"-p", "0", "h"}, `-p/--ssh-port: invalid port "0"`},
		{[]string{"a", "b"}, "only one host may be given"},
		{[]string{"--target-host", "a", "b"}, "two hosts given: --target-host a and b"},
	}
	for _, tt := range tests {
		_, err := parse(t, tt.args...)
		var ue *phase.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want a usage error with %q", tt.args, err, tt.want)
		}
	}
}

func TestResolveSecrets(t *testing.T) {
	env := map[string]string{"SSHPASS": "pw", "SUDO": "spw", "SSH_AUTH_SOCK": "/agent"}
	getenv := func(k string) string { return env[k] }
	c := Conn{EnvPassword: true, SudoPasswordEnv: "SUDO"}
	o, err := c.Resolve(getenv, strings.NewReader(""), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Password != "pw" || o.SudoPassword != "spw" || o.AgentSocket != "/agent" || o.Prompt != nil {
		t.Errorf("got password %q sudo %q agent %q prompt %v", o.Password, o.SudoPassword, o.AgentSocket, o.Prompt != nil)
	}
	for _, c := range []Conn{{EnvPassword: true}, {SudoPasswordEnv: "NONE"}} {
		var ue *phase.UsageError
		if _, err := c.Resolve(func(string) string { return "" }, strings.NewReader(""), nil, nil); !errors.As(err, &ue) {
			t.Errorf("%+v with an empty environment: got %v, want a usage error", c, err)
		}
	}
}
