package flakehosts

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/fleet"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// flake is testdata/DIR as a path: reference (the tree around it is a git
// repository, whose untracked files a plain path would not see).
func flake(t *testing.T, dir string) string {
	t.Helper()
	nixtest.Require(t)
	abs, err := filepath.Abs(filepath.Join("testdata", dir))
	if err != nil {
		t.Fatal(err)
	}
	return "path:" + abs
}

const (
	webPath   = `deploy.nodes."web".profiles.system.path`
	colmenaDB = `colmenaHive.nodes."db".config.system.build.toplevel`
)

// TestHosts: the fleet a flake declares in deploy-rs's and colmena's shapes,
// as each tool reads it, and what --on and REF#NAME pick from it.
func TestHosts(t *testing.T) {
	tests := []struct {
		name, dir, attr, on string
		want                []fleet.Host
	}{
		{name: "deploy-rs settings merged profile, node, top level", dir: "deployrs", want: []fleet.Host{
			{Name: "db", User: "admin", Addr: "db.example.org", Port: 2200,
				SSHOptions: []string{"StrictHostKeyChecking=accept-new", "IdentityFile=~/.ssh/fleet"},
				System:     `deploy.nodes."db".profiles.system.path`},
			{Name: "web", User: "deploy", Addr: "web.example.org", Port: 2222,
				SSHOptions: []string{"IdentityFile=~/.ssh/fleet"}, System: webPath},
		}},
		{name: "deploy-rs REF#NAME picks the node", dir: "deployrs", attr: "web", want: []fleet.Host{
			{Name: "web", User: "deploy", Addr: "web.example.org", Port: 2222,
				SSHOptions: []string{"IdentityFile=~/.ssh/fleet"}, System: webPath},
		}},
		{name: "colmena defaults: targetHost is the name, targetUser root", dir: "colmena", want: []fleet.Host{
			{Name: "db", User: "root", Addr: "db", Tags: []string{"all", "db"}, System: colmenaDB},
			{Name: "web1", User: "root", Addr: "web1.eu.example.org", Tags: []string{"all", "web", "eu"},
				System: `colmenaHive.nodes."web1".config.system.build.toplevel`},
			{Name: "web2", User: "ops", Addr: "web2.example.org", Port: 2222, Tags: []string{"all", "web"},
				System: `colmenaHive.nodes."web2".config.system.build.toplevel`},
		}},
		{name: "colmena --on @tag", dir: "colmena", on: "@eu,db", want: []fleet.Host{
			{Name: "db", User: "root", Addr: "db", Tags: []string{"all", "db"}, System: colmenaDB},
			{Name: "web1", User: "root", Addr: "web1.eu.example.org", Tags: []string{"all", "web", "eu"},
				System: `colmenaHive.nodes."web1".config.system.build.toplevel`},
		}},
		{name: "colmena --on glob", dir: "colmena", on: "web*", want: []fleet.Host{
			{Name: "web1", User: "root", Addr: "web1.eu.example.org", Tags: []string{"all", "web", "eu"},
				System: `colmenaHive.nodes."web1".config.system.build.toplevel`},
			{Name: "web2", User: "ops", Addr: "web2.example.org", Port: 2222, Tags: []string{"all", "web"},
				System: `colmenaHive.nodes."web2".config.system.build.toplevel`},
		}},
		{name: "both: union, deploy.nodes connects, colmena's tags kept", dir: "both", want: []fleet.Host{
			{Name: "cache", User: "root", Addr: "cache.example.org", Port: 2200, Tags: []string{"infra"},
				System: `colmenaHive.nodes."cache".config.system.build.toplevel`},
			{Name: "web", User: "deploy", Addr: "web.example.org", Tags: []string{"web"}, System: webPath},
		}},
		{name: "both: --on @tag finds the deploy-rs node", dir: "both", on: "@web", want: []fleet.Host{
			{Name: "web", User: "deploy", Addr: "web.example.org", Tags: []string{"web"}, System: webPath},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := flake(t, tc.dir)
			if tc.attr != "" {
				ref += "#" + tc.attr
			}
			got, err := Hosts(context.Background(), nixtest.CLI(), ref, tc.on)
			if err != nil {
				t.Fatalf("Hosts(%s, %q): %v", tc.dir, tc.on, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Hosts(%s, %q) =\n%+v\nwant\n%+v", tc.dir, tc.on, got, tc.want)
			}
		})
	}
}

// TestHostsErrors: declarations nixos-via cannot follow, and selections that
// match nothing, stop with a usage error that says which and why.
func TestHostsErrors(t *testing.T) {
	tests := []struct {
		dir, attr, on string
		want          []string
	}{
		{dir: "nohostname", want: []string{"deploy.nodes.web: no hostname"}},
		{dir: "rawcolmena", want: []string{"raw hive", "colmenaHive = colmena.lib.makeHive self.colmena"}},
		{dir: "nofleet", want: []string{"declares no fleet"}},
		{dir: "colmena", on: "web1,nope", want: []string{`--on "nope": no host matches (hosts: db, web1, web2)`}},
		{dir: "colmena", on: "laptop", want: []string{`no host matches`}},
		{dir: "deployrs", on: "@web", want: []string{`--on "@web": no host matches (hosts: db, web)`}},
		{dir: "deployrs", attr: "laptop-home", want: []string{`"laptop-home": no host matches (hosts: db, web)`}},
	}
	for _, tc := range tests {
		t.Run(tc.dir+"#"+tc.attr+" --on "+tc.on, func(t *testing.T) {
			ref := flake(t, tc.dir)
			if tc.attr != "" {
				ref += "#" + tc.attr
			}
			got, err := Hosts(context.Background(), nixtest.CLI(), ref, tc.on)
			var ue *phase.UsageError
			if err == nil || !errors.As(err, &ue) {
				t.Fatalf("Hosts = %+v, %v; want a usage error", got, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestSSHOpts: deploy-rs's sshOpts (arguments of ssh) as nixos-via's port
// and -o options; what nixos-via cannot honour is an error, not ignored.
func TestSSHOpts(t *testing.T) {
	tests := []struct {
		in   []string
		port int
		opts []string
		bad  string
	}{
		{in: []string{"-p", "2221"}, port: 2221},
		{in: []string{"-p2221", "-t"}, port: 2221},
		{in: []string{"-i", "/k", "-oProxyJump=bastion", "-l", "ops"}, opts: []string{"IdentityFile=/k", "ProxyJump=bastion", "User=ops"}},
		{in: []string{"-o", "StrictHostKeyChecking=no", "-q", "-C"}, opts: []string{"StrictHostKeyChecking=no"}},
		{in: []string{"-A"}, bad: `sshOpts "-A"`},
		{in: []string{"-p", "0"}, bad: "want a port"},
		{in: []string{"-p"}, bad: "missing its value"},
		{in: []string{"-o", "ForwardAgent=yes"}, bad: "not supported"},
		{in: []string{"host"}, bad: `sshOpts "host"`},
	}
	for _, tc := range tests {
		port, opts, err := SSHOpts(tc.in)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("SSHOpts(%q) error = %v, want %q", tc.in, err, tc.bad)
			}
			continue
		}
		if err != nil || port != tc.port || !reflect.DeepEqual(opts, tc.opts) {
			t.Errorf("SSHOpts(%q) = %d, %q, %v; want %d, %q", tc.in, port, opts, err, tc.port, tc.opts)
		}
	}
}

func TestAbsRef(t *testing.T) {
	abs, _ := filepath.Abs("x")
	for _, tc := range []struct{ in, want string }{
		{"x", abs},
		{"path:x", "path:" + abs},
		{"/abs/flake", "/abs/flake"},
		{"github:o/r", "github:o/r"},
		{"git+file:///r", "git+file:///r"},
	} {
		if got := absRef(tc.in); got != tc.want {
			t.Errorf("absRef(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
