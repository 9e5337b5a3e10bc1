package cli

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/sequence"
)

func TestParseArgsEveryFlag(t *testing.T) {
	args := []string{
		"--flake", "github:me/cfg#web", "-i", "/k", "-p", "2222", "--ssh-option", "ConnectTimeout=5",
		"--ssh-option", "User=admin", "-L", "--env-password", "--kexec", "/tmp/k.tar.gz", "--force-kexec",
		"--kexec-extra-flags", "--no-sync", "--post-kexec-ssh-port", "2200", "--copy-host-keys",
		"--extra-files", "/x", "--chown", "/home/a", "1000:100", "--disk-encryption-keys", "/tmp/k", "/local/k",
		"--no-substitute-on-destination", "--debug", "--show-trace", "--option", "cores", "4",
		"--build-on", "local", "--phases", "kexec,disko", "--disko-mode", "format", "--no-disko-deps",
		"--host-key", "SHA256:abc", "--sudo-password-env", "PW", "--json", "--yes", "--copy-jobs", "3",
		"--timeout-connect", "30s", "--timeout-kexec", "4m", "--timeout-reboot", "7m", "--kexec-sha256", "ABCD",
		"root@203.0.113.7",
	}
	o, help, err := ParseArgs(args)
	if err != nil || help {
		t.Fatalf("ParseArgs: help=%v err=%v", help, err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Host", o.conn.Destination, "root@203.0.113.7"},
		{"FlakeRef", o.FlakeRef, "github:me/cfg"},
		{"FlakeAttr", o.FlakeAttr, `nixosConfigurations."web".config`},
		{"IdentityFile", o.conn.IdentityFiles, []string{"/k"}},
		{"Port", o.conn.Port, 2222},
		{"SSHOptions", o.conn.SSHOptions, []string{"ConnectTimeout=5", "User=admin"}},
		{"PrintBuildLog", o.printBuildLog, true},
		{"EnvPassword", o.conn.EnvPassword, true},
		{"Kexec", o.Kexec.Source, "/tmp/k.tar.gz"},
		{"ForceKexec", o.Kexec.Force, true},
		{"KexecExtraFlags", o.Kexec.ExtraFlags, "--no-sync"},
		{"PostKexecPort", o.Kexec.PostKexecPort, 2200},
		{"CopyHostKeys", o.CopyHostKeys, true},
		{"ExtraFiles", o.ExtraFiles, "/x"},
		{"Chown", o.Chown, []install.Ownership{{Path: "/home/a", Owner: "1000:100"}}},
		{"DiskEncryptionKey", o.KeyFiles, []diskorun.KeyFile{{Remote: "/tmp/k", Local: "/local/k"}}},
		{"NoSubstitute", !o.Substitute, true},
		{"NoMachineSubst (implied)", !o.MachineSubstituters, true},
		{"Debug", o.conn.Debug, true},
		{"NixOptions, ShowTrace", o.Nix.Args, []string{"--option", "cores", "4", "--show-trace"}},
		{"BuildOn", o.BuildOn, "local"},
		{"Phases", o.Phases, []string{"kexec", "disko"}},
		{"DiskoMode", o.DiskoMode, "format"},
		{"NoDiskoDeps", o.NoDiskoDeps, true},
		{"HostKey", o.conn.HostKeyPin, "SHA256:abc"},
		{"SudoPasswordEnv", o.conn.SudoPasswordEnv, "PW"},
		{"JSON", o.JSON, true},
		{"Yes", o.Yes, true},
		{"CopyJobs", o.CopyJobs, 3},
		{"TimeoutConnect", o.conn.Timeout, 30 * time.Second},
		{"TimeoutKexec", o.Kexec.DownTimeout, 4 * time.Minute},
		{"TimeoutReboot", o.RebootTimeout, 7 * time.Minute},
		{"KexecSHA256", o.Kexec.SHA256, "abcd"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestParseArgsForms(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(*Options) (got, want any)
	}{
		{"--force-kexec does not swallow the next argument (upstream bug)",
			[]string{"--force-kexec", "root@h", "-f", ".#x"},
			func(o *Options) (any, any) { return []any{o.Kexec.Force, o.conn.Destination}, []any{true, "root@h"} }},
		{"--post-kexec-ssh-port without -p (upstream needs -p)",
			[]string{"--post-kexec-ssh-port", "2222", "-f", ".#x", "h"},
			func(o *Options) (any, any) { return []any{o.Kexec.PostKexecPort, o.conn.Port}, []any{2222, 0} }},
		{"two-argument flags repeat",
			[]string{"-f", ".#x", "--chown", "/a", "1:1", "--chown", "/b", "root", "h", "--option", "k1", "v1", "--option", "k2", "v2"},
			func(o *Options) (any, any) {
				return []any{o.Chown, o.Nix.Args}, []any{[]install.Ownership{{Path: "/a", Owner: "1:1"}, {Path: "/b", Owner: "root"}}, []string{"--option", "k1", "v1", "--option", "k2", "v2"}}
			}},
		{"a two-argument value that looks like a flag",
			[]string{"-f", ".#x", "--option", "extra-substituters", "--json", "h"},
			func(o *Options) (any, any) {
				return []any{o.Nix.Args, o.JSON}, []any{[]string{"--option", "extra-substituters", "--json"}, false}
			}},
		{"-s takes two store paths",
			[]string{"-s", "/nix/store/a-disko", "/nix/store/b-system", "h"},
			func(o *Options) (any, any) {
				return *o.StorePaths, sequence.StorePaths{Disko: "/nix/store/a-disko", System: "/nix/store/b-system"}
			}},
		{"a flake fragment with a full attribute path is kept",
			[]string{"-f", "/cfg#nixosConfigurations.x.config.virtualisation.vmVariant", "h"},
			func(o *Options) (any, any) {
				return []string{o.FlakeRef, o.FlakeAttr}, []string{"/cfg", "nixosConfigurations.x.config.virtualisation.vmVariant"}
			}},
		{"#name alone means the current directory",
			[]string{"-f", "#web", "h"},
			func(o *Options) (any, any) { return o.FlakeRef, "." }},
		{"--target-host instead of the positional host",
			[]string{"-f", ".#x", "--target-host", "admin@[2001:db8::1]:22"},
			func(o *Options) (any, any) { return o.conn.Destination, "admin@[2001:db8::1]:22" }},
		{"--no-reboot (deprecated)",
			[]string{"-f", ".#x", "--no-reboot", "h"},
			func(o *Options) (any, any) {
				return []any{o.Phases, len(o.Deprecated)}, []any{[]string{"kexec", "disko", "install"}, 1}
			}},
		{"--stop-after-disko (deprecated)",
			[]string{"-f", ".#x", "--stop-after-disko", "h"},
			func(o *Options) (any, any) { return o.Phases, []string{"kexec", "disko"} }},
		{"--build-on-remote (deprecated)",
			[]string{"-f", ".#x", "--build-on-remote", "h"},
			func(o *Options) (any, any) { return o.BuildOn, "remote" }},
		{"-t (deprecated, ignored)",
			[]string{"-f", ".#x", "-t", "h"},
			func(o *Options) (any, any) {
				return o.Deprecated, []string{"-t/--tty is deprecated and ignored: terminals are detected"}
			}},
		{"defaults",
			[]string{"-f", ".#x", "h"},
			func(o *Options) (any, any) {
				return []any{o.Phases, o.BuildOn, o.DiskoMode, o.CopyJobs, o.RebootTimeout},
					[]any{[]string{"kexec", "disko", "install", "reboot"}, "auto", "disko", 2, 15 * time.Minute}
			}},
		{"phases deduplicated in the given order",
			[]string{"-f", ".#x", "--phases", "install,disko,install", "h"},
			func(o *Options) (any, any) { return o.Phases, []string{"install", "disko"} }},
		{"--phases kexec needs no system to install",
			[]string{"--phases", "kexec", "--kexec", "/k.tar.gz", "h"},
			func(o *Options) (any, any) { return []any{o.Phases, o.Flake}, []any{[]string{"kexec"}, ""} }},
		{"--flag=value form",
			[]string{"--flake=.#x", "--ssh-port=23", "--phases=disko", "h"},
			func(o *Options) (any, any) {
				return []any{o.FlakeAttr, o.conn.Port, o.Phases}, []any{`nixosConfigurations."x".config`, 23, []string{"disko"}}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _, err := ParseArgs(tc.args)
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tc.args, err)
			}
			got, want := tc.check(o)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}
}

func TestParseArgsUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantMsg string
	}{
		{[]string{"h"}, "--flake"},
		{[]string{"-f", ".#x"}, "no host"},
		{[]string{"-f", "."}, "missing #NAME"},
		{[]string{"-f", ".#x", "a", "b"}, "only one host"},
		{[]string{"-f", ".#x", "--phases", "kexec,format", "h"}, `unknown phase "format"`},
		{[]string{"-f", ".#x", "--chown", "/a"}, "needs two arguments"},
		{[]string{"-f", ".#x", "--chown=/a", "b", "h"}, "takes two arguments"},
		{[]string{"-f", ".#x", "--build-on", "cloud", "h"}, "--build-on"},
		{[]string{"-f", ".#x", "--build-on", "local", "--build-on-remote", "h"}, "conflicts"},
		{[]string{"-f", ".#x", "--disko-mode", "destroy", "h"}, "--disko-mode"},
		{[]string{"-s", "/a", "/b", "--disko-mode", "mount", "h"}, "--store-paths cannot"},
		{[]string{"-s", "/a", "/b", "-f", ".#x", "h"}, "exclude each other"},
		{[]string{"-f", ".#x", "-p", "99999", "h"}, "invalid port"},
		{[]string{"-f", ".#x", "--ssh-option", "Bogus=1", "h"}, "not supported"},
		{[]string{"-f", ".#x", "--ssh-option", "StrictHostKeyChecking=maybe", "h"}, "StrictHostKeyChecking"},
		{[]string{"-f", ".#x", "--timeout-kexec", "soon", "h"}, "--timeout-kexec"},
		{[]string{"-f", ".#x", "--host-key", "MD5:aa", "h"}, "SHA256"},
		{[]string{"-f", ".#x", "--disk-encryption-keys", "rel/key", "/l", "h"}, "absolute"},
		{[]string{"-f", ".#x", "--copy-jobs", "0", "h"}, "--copy-jobs"},
		{[]string{"-f", ".#x", "--no-such-flag", "h"}, "no-such-flag"},
		{[]string{"-f", ".#x", "--target-host", "a", "b"}, "two hosts"},
		{[]string{"--vm-test", "-s", "/a", "/b"}, "--store-paths cannot"},
		{[]string{"-f", ".#x", "--generate-hardware-config", "lshw", "/p", "h"}, "nixos-facter"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := ParseArgs(tc.args)
			if err == nil {
				t.Fatalf("ParseArgs(%q) = nil error, want one containing %q", tc.args, tc.wantMsg)
			}
			if _, ok := err.(*UsageError); !ok {
				t.Errorf("error %T, want *UsageError", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q, want it to contain %q", err, tc.wantMsg)
			}
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var b strings.Builder
	writeHelp(&b)
	help := b.String()
	for _, s := range installFlags(&Options{}) {
		spelled := "--" + s.Name
		if s.ShortOnly {
			spelled = "-" + s.Short + " "
		}
		if !strings.Contains(help, spelled) {
			t.Errorf("--help does not list %s", s.Name)
		}
	}
	for _, g := range groups {
		if !strings.Contains(help, g+":") {
			t.Errorf("--help lacks group %q", g)
		}
	}
}
