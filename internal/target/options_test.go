package target

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSplitDestination(t *testing.T) {
	tests := []struct {
		in         string
		user, host string
		port       int
		wantErr    bool
	}{
		{"203.0.113.7", "", "203.0.113.7", 0, false},
		{"root@203.0.113.7", "root", "203.0.113.7", 0, false},
		{"root@host.example:2222", "root", "host.example", 2222, false},
		{"2001:db8::1", "", "2001:db8::1", 0, false},
		{"admin@[2001:db8::1]:22", "admin", "2001:db8::1", 22, false},
		{"[2001:db8::1]", "", "2001:db8::1", 0, false},
		{"a@b@host", "a@b", "host", 0, false},
		{"myalias", "", "myalias", 0, false},
		{"", "", "", 0, true},
		{"@host", "", "", 0, true},
		{"host:0", "", "", 0, true},
		{"host:x", "", "", 0, true},
		{"[::1", "", "", 0, true},
		{"root@", "", "", 0, true},
	}
	for _, tc := range tests {
		user, host, port, err := SplitDestination(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("SplitDestination(%q) err = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && (user != tc.user || host != tc.host || port != tc.port) {
			t.Errorf("SplitDestination(%q) = %q %q %d, want %q %q %d", tc.in, user, host, port, tc.user, tc.host, tc.port)
		}
	}
}

func TestResolvePrecedence(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	key := filepath.Join(home, ".ssh", "id_box")
	os.WriteFile(key, []byte("x"), 0o600)
	cfg := `Host box
  HostName 192.0.2.10
  Port 2200
  User admin
  IdentityFile ~/.ssh/id_box
  ProxyJump jump1,jump2
  StrictHostKeyChecking yes
  UserKnownHostsFile ~/kh1 ~/kh2
  ConnectTimeout 7
`
	os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(cfg), 0o600)
	tests := []struct {
		name string
		opts Options
		want Resolved
	}{
		{"config file fills everything", Options{Destination: "box"}, Resolved{
			HostName: "192.0.2.10", User: "admin", Port: 2200,
			Options: Options{IdentityFiles: []string{key}, KnownHostsFiles: []string{home + "/kh1", home + "/kh2"},
				StrictHostKeyChecking: StrictYes, ProxyJump: "jump1,jump2", ConnectTimeout: 7 * time.Second}}},
		{"destination and flags win over the config", Options{Destination: "root@box:22", SSHOptions: []string{"ProxyJump=none", "StrictHostKeyChecking=accept-new"}, Port: 9}, Resolved{
			HostName: "192.0.2.10", User: "root", Port: 22,
			Options: Options{IdentityFiles: []string{key}, KnownHostsFiles: []string{home + "/kh1", home + "/kh2"},
				StrictHostKeyChecking: StrictAcceptNew, ConnectTimeout: 7 * time.Second}}},
		{"-o options, first value wins", Options{Destination: "other", SSHOptions: []string{"Port=33", "Port=44", "User=u", "UserKnownHostsFile=/kh", "ConnectTimeout 3"}}, Resolved{
			HostName: "other", User: "u", Port: 33,
			Options: Options{KnownHostsFiles: []string{"/kh"}, StrictHostKeyChecking: StrictAcceptNew, ConnectTimeout: 3 * time.Second}}},
		{"defaults", Options{Destination: "203.0.113.7"}, Resolved{
			HostName: "203.0.113.7", User: "root", Port: 22,
			Options: Options{KnownHostsFiles: []string{home + "/.ssh/known_hosts"}, StrictHostKeyChecking: StrictAcceptNew, ConnectTimeout: 10 * time.Second}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.opts.Resolve(home)
			if err != nil {
				t.Fatal(err)
			}
			got := []any{r.HostName, r.User, r.Port, r.IdentityFiles, r.KnownHostsFiles, r.StrictHostKeyChecking, r.ProxyJump, r.ConnectTimeout}
			w := tc.want
			want := []any{w.HostName, w.User, w.Port, w.IdentityFiles, w.KnownHostsFiles, w.StrictHostKeyChecking, w.ProxyJump, w.ConnectTimeout}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestCheckSSHOptions(t *testing.T) {
	for _, tc := range []struct {
		opt     string
		wantErr string
	}{
		{"Port=22", ""},
		{"ProxyJump bastion", ""},
		{"ControlMaster=auto", ""},
		{"StrictHostKeyChecking=no", ""},
		{"LocalForward=1:2", "not supported"},
		{"Port", "want Key=Value"},
		{"Port=", "missing value"},
		{"StrictHostKeyChecking=sometimes", "StrictHostKeyChecking"},
	} {
		err := CheckSSHOptions([]string{tc.opt})
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("CheckSSHOptions(%q) = %v, want error containing %q", tc.opt, err, tc.wantErr)
		}
	}
}

const sampleProbe = `os=Linux
arch=x86_64
kernel=6.1.0-56-cloud-amd64
memtotal=8000000
memavail=6000000
firmware=efi
secureboot=1
osid=debian
osidlike=
osname=Debian GNU/Linux 12 (bookworm)
variant=
uid=1000
user=admin
escalation=sudo
container=none
virt=kvm
kexecdisabled=1
lockdown=none [integrity] confidentiality
tmpfree=1000
has_tar=y
has_cpio=n
has_setsid=y
has_curl=y
has_wget=n
has_ip=y
has_kexec=n
has_sudo=y
has_doas=n
has_setsidwait=y
has_sftpserver=y
ipv6only=n
disk	name=vdb	size=2097152	model=	rm=0	ids=	mnt=
disk	name=vda	size=41943040	model=QEMU HARDDISK	rm=0	ids=virtio-abc,virtio-abc-x	mnt=/,/boot
end=ok
`

func TestParseFacts(t *testing.T) {
	f, err := ParseFacts(sampleProbe)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{f.OS, f.Arch, f.MemTotalKiB, f.Firmware, f.SecureBoot, f.IsNixOS, f.IsRoot, f.Escalation, f.SudoPassword,
		f.KexecDisabled, f.Lockdown, f.Tools.Cpio, f.Tools.SetsidWait, len(f.Disks)}
	want := []any{"Linux", "x86_64", int64(8000000), "efi", "enabled", false, false, "sudo", true, true, "integrity", false, true, 2}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	vda := f.Disks[0]
	if vda.Name != "vda" || vda.SizeBytes != 41943040*512 || vda.Model != "QEMU HARDDISK" ||
		!reflect.DeepEqual(vda.ByID, []string{"virtio-abc", "virtio-abc-x"}) || !reflect.DeepEqual(vda.Mounted, []string{"/", "/boot"}) {
		t.Errorf("vda = %+v", vda)
	}
	if _, err := ParseFacts(strings.TrimSuffix(sampleProbe, "end=ok\n")); err == nil {
		t.Errorf("a truncated probe output was accepted")
	}
	nixos := strings.Replace(sampleProbe, "osid=debian", "osid=nixos", 1)
	nixos = strings.Replace(nixos, "variant=", "variant=installer", 1)
	if f, _ := ParseFacts(nixos); !f.IsNixOS || !f.IsInstaller || f.CurrentSystem != "" {
		t.Errorf("nixos installer not recognised: %+v", f)
	}
	const top = "/nix/store/dg06y5zddc0bcd0vkyyrpbqiw1hyki0h-nixos-system-a-25.05"
	installed := strings.Replace(nixos, "uid=", "currentsystem="+top+"\nuid=", 1)
	if f, _ := ParseFacts(installed); f.CurrentSystem != top {
		t.Errorf("CurrentSystem = %q, want %q", f.CurrentSystem, top)
	}
}

func FuzzParseFacts(f *testing.F) {
	f.Add(sampleProbe)
	f.Add("end=ok\ndisk\tname=\n")
	f.Fuzz(func(t *testing.T, s string) {
		ParseFacts(s) // must not panic
	})
}
