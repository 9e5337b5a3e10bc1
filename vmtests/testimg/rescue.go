package testimg

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nixos-via/nixos-via/images"
)

// RescueOptions shape a RescueInstaller.
type RescueOptions struct {
	// SharedMounts: the installer's init makes every mount shared (mount
	// --make-rshared /), as systemd does on a real NixOS installer.
	SharedMounts bool
}

// RescueInstaller returns a cached installer tarball to boot directly, as
// a provider's rescue system: the test host key and the client key baked
// in, the agent given.
func RescueInstaller(t testing.TB, keys *Keys, agent string, o RescueOptions) *images.Installer {
	t.Helper()
	needTools(t)
	sum, err := fileHash(agent)
	if err != nil {
		t.Fatal(err)
	}
	key := struct {
		Agent, HostKey, ClientPub string
		Opts                      RescueOptions
	}{sum, keys.HostKey.PublicLine, keys.ClientPub, o}
	var inst *images.Installer
	dir := cached(t, "rescue", key, func(dir string) error {
		var err error
		inst, err = images.BuildInstaller(t.Context(), filepath.Join(dir, "rescue.tar.gz"), images.InstallerOptions{
			Agent: agent, HostKeys: []images.HostKey{keys.HostKey}, AuthorizedKeys: []string{keys.ClientPub},
			SharedMounts: o.SharedMounts})
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "cmdline"), []byte(inst.Cmdline), 0o644)
	})
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return &images.Installer{Path: filepath.Join(dir, "rescue.tar.gz"), Cmdline: string(cmdline)}
}
