package sequence

import "testing"

func TestResumeCommand(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		host  string
		login string
		port  int
		want  string
	}{
		{"the same command", []string{"--flake", ".#web", "root@203.0.113.7"}, "root@203.0.113.7", "", 0,
			"nixos-via --flake '.#web' root@203.0.113.7"},
		{"words quoted for the shell", []string{"--flake", "./my flake#web", "--ssh-option", "ProxyCommand=nc %h %p", "root@h"}, "root@h", "", 0,
			"nixos-via --flake './my flake#web' --ssh-option 'ProxyCommand=nc %h %p' root@h"},
		{"a sudo login continues as root in the installer", []string{"-f", ".#web", "alice@h"}, "alice@h", "root", 0,
			"nixos-via -f '.#web' root@h"},
		{"the installer's port", []string{"-f", ".#web", "-p", "2222", "--post-kexec-ssh-port", "22", "alice@h"}, "alice@h", "root", 22,
			"nixos-via -f '.#web' -p 2222 --post-kexec-ssh-port 22 root@h -p 22"},
		{"a port in the destination gives way to -p", []string{"-f", ".#web", "--target-host=alice@h:2222"}, "alice@h:2222", "root", 22,
			"nixos-via -f '.#web' --target-host=root@h -p 22"},
		{"--target-host as two words", []string{"-f", ".#web", "--target-host", "alice@h"}, "alice@h", "root", 0,
			"nixos-via -f '.#web' --target-host root@h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ResumeCommand(tc.args, tc.host, tc.login, tc.port); got != tc.want {
				t.Errorf("ResumeCommand = %q\nwant             %q", got, tc.want)
			}
		})
	}
}
