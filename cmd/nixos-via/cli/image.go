package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nixos-via/nixos-via/images"
	"github.com/nixos-via/nixos-via/internal/event"
)

const imageUsage = `Usage:
  nixos-via image installer --out FILE.tar.gz [--agent PATH] [options]
  nixos-via image provider  --out DIR --host-key FILE [--authorized-keys FILE] [options]

installer: a kexec installer tarball in the nixos-images layout (kexec/bzImage,
  kexec/initrd, kexec/run, helpers) from this host's Debian cloud kernel and
  Debian tools, with this nixos-via binary (or --agent) as the agent.
provider: a kernel + initramfs (DIR/bzImage, DIR/initrd, DIR/cmdline) standing
  for a generic Linux host in VM tests: busybox, OpenSSH, sudo, DHCP, no Nix.
`

// runImage is `nixos-via image <installer|provider> [flags]`; args exclude "image".
func runImage(ctx context.Context, env Env, args []string) error {
	var err error
	switch {
	case len(args) == 0:
		err = usagef("image: missing verb (installer or provider)")
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(env.Stdout, imageUsage)
		return nil
	case args[0] == "installer":
		err = imageInstaller(ctx, env, args[1:])
	case args[0] == "provider":
		err = imageProvider(ctx, env, args[1:])
	default:
		err = usagef("image: unknown verb %q (want installer or provider)", args[0])
	}
	if err != nil {
		return &commandError{prefix: "nixos-via", help: imageUsage, err: err}
	}
	return nil
}

func imageEvents(env Env) event.Sink {
	return event.Func(func(e event.Event) {
		if e.Msg != "" {
			fmt.Fprintln(env.Stderr, e.Msg)
		}
	})
}

// imageCommon are the flags both verbs share.
type imageCommon struct {
	out, kernelVersion, compression, cmdline string
	hostKeyFiles                             []string
	authorizedKeys                           string
	help                                     bool
}

func (c *imageCommon) register(fs *pflag.FlagSet, outHelp string) {
	fs.StringVarP(&c.out, "out", "o", "", outHelp)
	fs.StringVar(&c.kernelVersion, "kernel-version", "", "kernel from /boot and /lib/modules (default: newest *-cloud-amd64)")
	fs.StringVar(&c.compression, "compression", "", "initrd compression: gzip, zstd or none")
	fs.StringVar(&c.cmdline, "cmdline", "", "extra kernel command line, e.g. sysctl.kernel.kexec_load_disabled=1")
	fs.StringArrayVar(&c.hostKeyFiles, "host-key", nil, "SSH host private key file (repeatable)")
	fs.StringVar(&c.authorizedKeys, "authorized-keys", "", "authorized_keys file for root")
	fs.BoolVarP(&c.help, "help", "h", false, "show help")
}

func (c *imageCommon) load() (kernel images.Kernel, comp images.Compression, hostKeys []images.HostKey, authorized []string, err error) {
	if c.compression != "" {
		if comp, err = images.ParseCompression(c.compression); err != nil {
			return kernel, comp, nil, nil, usagef("image: --compression: %v", err)
		}
	}
	if kernel, err = images.HostKernel(c.kernelVersion); err != nil {
		return kernel, comp, nil, nil, fmt.Errorf("image: %w", err)
	}
	for _, f := range c.hostKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return kernel, comp, nil, nil, usagef("image: --host-key: %v", err)
		}
		hk, err := images.ParseHostKey(data)
		if err != nil {
			return kernel, comp, nil, nil, usagef("image: --host-key %s: %v", f, err)
		}
		hostKeys = append(hostKeys, hk)
	}
	if c.authorizedKeys != "" {
		if authorized, err = images.ReadAuthorizedKeys(c.authorizedKeys); err != nil {
			return kernel, comp, nil, nil, usagef("image: --authorized-keys: %v", err)
		}
	}
	return kernel, comp, hostKeys, authorized, nil
}

func parseImageFlags(fs *pflag.FlagSet, args []string, verb string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usagef("image %s: %v", verb, err)
	}
	if fs.NArg() > 0 {
		return usagef("image %s: unexpected arguments %q", verb, fs.Args())
	}
	return nil
}

func imageInstaller(ctx context.Context, env Env, args []string) error {
	fs := pflag.NewFlagSet("nixos-via image installer", pflag.ContinueOnError)
	var c imageCommon
	var agent string
	c.register(fs, "output tarball (.tar.gz)")
	fs.StringVar(&agent, "agent", "", "static nixos-via binary to include (default: this executable)")
	if err := parseImageFlags(fs, args, "installer"); err != nil {
		return err
	}
	if c.help {
		fmt.Fprint(env.Stdout, imageUsage, "\nFlags of image installer:\n", fs.FlagUsages())
		return nil
	}
	if c.out == "" {
		return usagef("image installer: --out FILE.tar.gz is required")
	}
	if !strings.HasSuffix(c.out, ".tar.gz") && !strings.HasSuffix(c.out, ".tgz") {
		return usagef("image installer: --out %q: want a .tar.gz file name", c.out)
	}
	if agent != "" {
		if err := images.AgentFromPath(agent); err != nil {
			return usagef("image installer: --agent: %v", err)
		}
	}
	kernel, comp, hostKeys, authorized, err := c.load()
	if err != nil {
		return err
	}
	inst, err := images.BuildInstaller(ctx, c.out, images.InstallerOptions{
		Kernel: kernel, Agent: agent, HostKeys: hostKeys, AuthorizedKeys: authorized,
		Cmdline: c.cmdline, Compression: comp, Events: imageEvents(env),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s\t%d bytes (kernel %d, initrd %d)\n", inst.Path, inst.Bytes, inst.KernelBytes, inst.InitrdBytes)
	return nil
}

func imageProvider(ctx context.Context, env Env, args []string) error {
	fs := pflag.NewFlagSet("nixos-via image provider", pflag.ContinueOnError)
	var c imageCommon
	var user, passwordEnv, userKeys, hostname, bootDisk string
	var noKexec bool
	c.register(fs, "output directory")
	fs.StringVar(&bootDisk, "boot-disk", "", "also write a GPT disk image (raw, or qcow2 by its name) whose ESP boots the provider with systemd-boot under UEFI")
	fs.StringVar(&user, "user", "", "non-root login user in group sudo")
	fs.StringVar(&passwordEnv, "user-password-env", "", "read the user's sudo password from this environment variable (default: sudo without password)")
	fs.StringVar(&userKeys, "user-authorized-keys", "", "authorized_keys file for --user (default: root's)")
	fs.StringVar(&hostname, "hostname", "", "host name (default provider)")
	fs.BoolVar(&noKexec, "no-kexec-tools", false, "leave kexec-tools out")
	if err := parseImageFlags(fs, args, "provider"); err != nil {
		return err
	}
	if c.help {
		fmt.Fprint(env.Stdout, imageUsage, "\nFlags of image provider:\n", fs.FlagUsages())
		return nil
	}
	if c.out == "" {
		return usagef("image provider: --out DIR is required")
	}
	if len(c.hostKeyFiles) == 0 {
		return usagef("image provider: at least one --host-key FILE is required")
	}
	if user == "" && (passwordEnv != "" || userKeys != "") {
		return usagef("image provider: --user-password-env and --user-authorized-keys need --user")
	}
	var password string
	if passwordEnv != "" {
		getenv := env.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		if password = getenv(passwordEnv); password == "" {
			return usagef("image provider: --user-password-env: $%s is empty or unset", passwordEnv)
		}
	}
	kernel, comp, hostKeys, authorized, err := c.load()
	if err != nil {
		return err
	}
	var ukeys []string
	if userKeys != "" {
		if ukeys, err = images.ReadAuthorizedKeys(userKeys); err != nil {
			return usagef("image provider: --user-authorized-keys: %v", err)
		}
	}
	p, err := images.BuildProvider(ctx, c.out, images.ProviderOptions{
		Kernel: kernel, HostKeys: hostKeys, RootAuthorizedKeys: authorized,
		User: user, UserPassword: password, UserAuthorizedKeys: ukeys,
		Cmdline: c.cmdline, Hostname: hostname, NoKexecTools: noKexec,
		Compression: comp, Events: imageEvents(env),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "kernel\t%s\ninitrd\t%s\t%d bytes\ncmdline\t%s\n", p.Kernel, p.Initrd, p.InitrdBytes, p.Cmdline)
	if bootDisk != "" {
		if err := images.BuildBootDisk(ctx, bootDisk, p.Kernel, p.Initrd, p.Cmdline); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "boot disk\t%s\n", bootDisk)
	}
	return nil
}
