package reboot

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
)

func TestReadBootConfig(t *testing.T) {
	nixtest.Require(t)
	dir := t.TempDir()
	// Configurations shaped as NixOS evaluates them, and one built
	// without the openssh and LUKS modules at all.
	flake := `{ outputs = { self }: { nixosConfigurations = {
  stock.config = {
    services.openssh = { enable = true; ports = [ 22 ]; settings.PermitRootLogin = "prohibit-password"; };
    users.users = { root.openssh.authorizedKeys = { keys = [ "ssh-ed25519 AAAA" ]; keyFiles = [ ]; };
      nixbld1 = { extraGroups = [ "nixbld" ]; openssh.authorizedKeys = { keys = [ ]; keyFiles = [ ]; }; }; };
    boot.initrd.luks.devices = { };
    boot.initrd.network = { enable = false; ssh = { enable = false; port = 22; }; };
  };
  locked-down.config = {
    services.openssh = { enable = true; ports = [ 2222 2223 ]; settings.PermitRootLogin = "no"; };
    users.users = {
      admin = { extraGroups = [ "wheel" ]; openssh.authorizedKeys = { keys = [ ]; keyFiles = [ ./admin.pub ]; }; };
      deploy = { extraGroups = [ ]; openssh.authorizedKeys.keys = [ "ssh-ed25519 BBBB" ]; };
      root.openssh.authorizedKeys.keys = [ ];
    };
    boot.initrd.luks.devices = {
      crypted = { device = "/dev/disk/by-partlabel/disk-main-luks"; keyFile = "/tmp/secret.key"; };
      data = { device = "/dev/vdb"; keyFile = null; };
      usb = { device = "/dev/vdc"; keyFile = "/dev/disk/by-id/usb-key"; };
      baked = { device = "/dev/vdd"; keyFile = "/etc/secrets/baked.key"; };
    };
    boot.initrd.secrets = { "/etc/secrets/baked.key" = null; };
    boot.initrd.network = { enable = true; ssh = { enable = true; port = 2200; }; };
  };
  old-option.config.services.openssh = { enable = true; permitRootLogin = "no"; };
  bare.config = { };
}; }; }`
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "admin.pub"), []byte("ssh-ed25519 CCCC\n"), 0o644)
	tests := []struct {
		host string
		want BootConfig
	}{
		{"stock", BootConfig{Known: true, SSHD: true, Ports: []int{22}, RootLogin: true, Users: []string{}, Wheel: []string{}, Passphrase: []string{}}},
		{"locked-down", BootConfig{Known: true, SSHD: true, Ports: []int{2222, 2223}, RootLogin: false,
			Users: []string{"admin", "deploy"}, Wheel: []string{"admin"}, Passphrase: []string{"crypted", "data"}, InitrdSSHPort: 2200}},
		{"old-option", BootConfig{Known: true, SSHD: true, Ports: []int{22}, RootLogin: false, Users: []string{}, Wheel: []string{}, Passphrase: []string{}}},
		{"bare", BootConfig{Known: true, SSHD: false, Ports: []int{22}, RootLogin: true, Users: []string{}, Wheel: []string{}, Passphrase: []string{}}},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got, err := ReadBootConfig(ctx, nixtest.CLI(), "path:"+dir+`#nixosConfigurations."`+tc.host+`".config`)
			if err != nil {
				t.Fatalf("ReadBootConfig: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ReadBootConfig =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}
