package reboot

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// BootConfig is what the installed configuration says about how the
// system comes up after the reboot: Run checks what it can of it and
// nothing it cannot. The zero value is an unknown configuration (a
// prebuilt --store-paths system): sshd on the installer's port, root
// login by key, no passphrase at boot.
type BootConfig struct {
	Known bool // read from the configuration

	SSHD      bool  // services.openssh.enable
	Ports     []int // services.openssh.ports
	RootLogin bool  // PermitRootLogin lets root in with a key
	// Users have authorized keys in the configuration (root aside);
	// Wheel are those of them in group wheel.
	Users, Wheel []string
	// Passphrase names the LUKS devices whose passphrase the initrd asks
	// for at boot: no key file, or one that only existed while installing
	// (neither a device nor one of boot.initrd.secrets).
	Passphrase []string
	// InitrdSSHPort is boot.initrd.network.ssh.port when the initrd
	// offers SSH to type the passphrase; 0 when it does not.
	InitrdSSHPort int
}

// bootConfigExpr reads BootConfig's facts from a NixOS configuration
// (`config`), with NixOS's defaults where an option is absent, so that a
// configuration built without some module still evaluates.
const bootConfigExpr = `c: let
  o = c.services.openssh or { };
  luks = c.boot.initrd.luks.devices or { };
  secrets = c.boot.initrd.secrets or { };
  issh = c.boot.initrd.network.ssh or { };
  users = c.users.users or { };
  keyed = n: let k = users.${n}.openssh.authorizedKeys or { }; in (k.keys or [ ]) != [ ] || (k.keyFiles or [ ]) != [ ];
  asks = n: let k = luks.${n}.keyFile or null; in
    k == null || !(builtins.substring 0 5 k == "/dev/" || builtins.hasAttr k secrets);
  named = builtins.filter (n: n != "root") (builtins.attrNames users);
in {
  sshd = o.enable or false;
  ports = o.ports or [ 22 ];
  permitRootLogin = o.settings.PermitRootLogin or o.permitRootLogin or "prohibit-password";
  users = builtins.filter keyed named;
  wheel = builtins.filter (n: keyed n && builtins.elem "wheel" (users.${n}.extraGroups or [ ])) named;
  passphrase = builtins.filter asks (builtins.attrNames luks);
  initrdSSHPort = if (c.boot.initrd.network.enable or false) && (issh.enable or false) then issh.port or 22 else 0;
}`

// ReadBootConfig evaluates the BootConfig of the configuration at attr
// (e.g. path:/x#nixosConfigurations."h".config).
func ReadBootConfig(ctx context.Context, c nix.CLI, attr string) (BootConfig, error) {
	raw, err := c.EvalApply(ctx, attr, bootConfigExpr)
	if err != nil {
		return BootConfig{}, fmt.Errorf("read how the system comes up: %w", err)
	}
	return parseBootConfig(raw)
}

func parseBootConfig(raw []byte) (BootConfig, error) {
	var v struct {
		SSHD            bool     `json:"sshd"`
		Ports           []int    `json:"ports"`
		PermitRootLogin string   `json:"permitRootLogin"`
		Users           []string `json:"users"`
		Wheel           []string `json:"wheel"`
		Passphrase      []string `json:"passphrase"`
		InitrdSSHPort   int      `json:"initrdSSHPort"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return BootConfig{}, fmt.Errorf("read how the system comes up: %w", err)
	}
	return BootConfig{
		Known: true, SSHD: v.SSHD, Ports: v.Ports,
		// "forced-commands-only" lets root run one command, not ours.
		RootLogin: slices.Contains([]string{"yes", "prohibit-password", "without-password"}, v.PermitRootLogin),
		Users:     v.Users, Wheel: v.Wheel, Passphrase: v.Passphrase, InitrdSSHPort: v.InitrdSSHPort,
	}, nil
}
