package images

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// Inputs are the words and files of the `nixos-via image` command line
// that both images take. The Options methods of InstallerInputs and
// ProviderInputs check them and read the files, in the command line's
// order; a bad one is a *phase.UsageError naming its flag, phrased as the
// command prints it, and a missing kernel is the host's failure.
type Inputs struct {
	Out            string   // --out: the tarball or directory to write
	KernelVersion  string   // --kernel-version; "" is HostKernel's choice
	Compression    string   // --compression; "" is the image's default
	Cmdline        string   // --cmdline
	HostKeyFiles   []string // --host-key: private key files
	AuthorizedKeys string   // --authorized-keys: root's authorized_keys file
}

// read is what the Inputs name, read.
type read struct {
	kernel     Kernel
	comp       Compression
	hostKeys   []HostKey
	authorized []string
}

// read parses the compression, finds the kernel and reads the key files.
func (in Inputs) read() (r read, err error) {
	if in.Compression != "" {
		if r.comp, err = ParseCompression(in.Compression); err != nil {
			return r, phase.Usagef("image: --compression: %v", err)
		}
	}
	if r.kernel, err = HostKernel(in.KernelVersion); err != nil {
		return r, fmt.Errorf("image: %w", err)
	}
	for _, f := range in.HostKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return r, phase.Usagef("image: --host-key: %v", err)
		}
		hk, err := ParseHostKey(data)
		if err != nil {
			return r, phase.Usagef("image: --host-key %s: %v", f, err)
		}
		r.hostKeys = append(r.hostKeys, hk)
	}
	if in.AuthorizedKeys != "" {
		if r.authorized, err = ReadAuthorizedKeys(in.AuthorizedKeys); err != nil {
			return r, phase.Usagef("image: --authorized-keys: %v", err)
		}
	}
	return r, nil
}

// InstallerInputs are the command line of `nixos-via image installer`.
type InstallerInputs struct {
	Inputs
	Agent string // --agent: the static nixos-via binary to include
}

// Options checks the command line and reads its files into the options
// of BuildInstaller (to write to in.Out).
func (in InstallerInputs) Options() (InstallerOptions, error) {
	switch {
	case in.Out == "":
		return InstallerOptions{}, phase.Usagef("image installer: --out FILE.tar.gz is required")
	case !strings.HasSuffix(in.Out, ".tar.gz") && !strings.HasSuffix(in.Out, ".tgz"):
		return InstallerOptions{}, phase.Usagef("image installer: --out %q: want a .tar.gz file name", in.Out)
	}
	if in.Agent != "" {
		if err := AgentFromPath(in.Agent); err != nil {
			return InstallerOptions{}, phase.Usagef("image installer: --agent: %v", err)
		}
	}
	r, err := in.read()
	return InstallerOptions{Kernel: r.kernel, Agent: in.Agent, HostKeys: r.hostKeys, AuthorizedKeys: r.authorized,
		Cmdline: in.Cmdline, Compression: r.comp}, err
}

// ProviderInputs are the command line of `nixos-via image provider`.
type ProviderInputs struct {
	Inputs
	User               string // --user: a non-root login in group sudo
	UserPasswordEnv    string // --user-password-env: the variable holding its password
	UserAuthorizedKeys string // --user-authorized-keys: its authorized_keys file
	Hostname           string
	NoKexecTools       bool
}

// Options checks the command line and reads its files, and the user's
// password from getenv, into the options of BuildProvider (to write to
// in.Out).
func (in ProviderInputs) Options(getenv func(string) string) (ProviderOptions, error) {
	var o ProviderOptions
	switch {
	case in.Out == "":
		return o, phase.Usagef("image provider: --out DIR is required")
	case len(in.HostKeyFiles) == 0:
		return o, phase.Usagef("image provider: at least one --host-key FILE is required")
	case in.User == "" && (in.UserPasswordEnv != "" || in.UserAuthorizedKeys != ""):
		return o, phase.Usagef("image provider: --user-password-env and --user-authorized-keys need --user")
	}
	if in.UserPasswordEnv != "" {
		if o.UserPassword = getenv(in.UserPasswordEnv); o.UserPassword == "" {
			return o, phase.Usagef("image provider: --user-password-env: $%s is empty or unset", in.UserPasswordEnv)
		}
	}
	r, err := in.read()
	if err != nil {
		return o, err
	}
	if in.UserAuthorizedKeys != "" {
		if o.UserAuthorizedKeys, err = ReadAuthorizedKeys(in.UserAuthorizedKeys); err != nil {
			return o, phase.Usagef("image provider: --user-authorized-keys: %v", err)
		}
	}
	o.Kernel, o.HostKeys, o.RootAuthorizedKeys, o.Compression = r.kernel, r.hostKeys, r.authorized, r.comp
	o.User, o.Cmdline, o.Hostname, o.NoKexecTools = in.User, in.Cmdline, in.Hostname, in.NoKexecTools
	return o, nil
}

// Build is BuildInstaller of in's Options, with progress to events.
func (in InstallerInputs) Build(ctx context.Context, events event.Sink) (*Installer, error) {
	opts, err := in.Options()
	if err != nil {
		return nil, err
	}
	opts.Events = events
	return BuildInstaller(ctx, in.Out, opts)
}

// Build is BuildProvider of in's Options (the password from getenv), with
// progress to events.
func (in ProviderInputs) Build(ctx context.Context, getenv func(string) string, events event.Sink) (*Provider, error) {
	opts, err := in.Options(getenv)
	if err != nil {
		return nil, err
	}
	opts.Events = events
	return BuildProvider(ctx, in.Out, opts)
}
