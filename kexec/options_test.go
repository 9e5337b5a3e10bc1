package kexec

import "testing"

func TestUserCacheDir(t *testing.T) {
	tests := []struct{ xdg, home, want string }{
		{"", "/home/a", "/home/a/.cache/nixos-via/kexec"},
		{"/var/cache/a", "/home/a", "/var/cache/a/nixos-via/kexec"},
		{"/c/", "", "/c/nixos-via/kexec"},
	}
	for _, tt := range tests {
		if got := UserCacheDir(tt.xdg, tt.home); got != tt.want {
			t.Errorf("UserCacheDir(%q, %q) = %q, want %q", tt.xdg, tt.home, got, tt.want)
		}
	}
}
