package cli

import (
	"context"
	"errors"
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

// imageErr is an image subcommand failure with its exit code.
type imageErr struct {
	code int
	err  error
}

func imageUsagef(format string, a ...any) *imageErr {
	return &imageErr{ExitUsage, fmt.Errorf(format, a...)}
}

// runImage is `nixos-via image <installer|provider> [flags]`; args exclude "image".
func runImage(ctx context.Context, env Env, args []string) int {
	var ierr *imageErr
	switch {
	case len(args) == 0:
		ierr = imageUsagef("image: missing verb (installer or provider)")
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(env.Stdout, imageUsage)
		return ExitOK
	case args[0] == "installer":
		ierr = imageInstaller(ctx, env, args[1:])
	case args[0] == "provider":
		ierr = imageProvider(ctx, env, args[1:])
	default:
		ierr = imageUsagef("image: unknown verb %q (want installer or provider)", args[0])
	}
	if ierr == nil {
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "nixos-via: %v\n", ierr.err)
	if ierr.code == ExitUsage {
		fmt.Fprint(env.Stderr, imageUsage)
	}
	return ierr.code
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

func (c *imageCommon) load() (kernel images.Kernel, comp images.Compression, hostKeys []images.HostKey, authorized []string, ierr *imageErr) {
	var err error
	if c.compression != "" {
		if comp, err = images.ParseCompression(c.compression); err != nil {
			return kernel, comp, nil, nil, imageUsagef("image: --compression: %v", err)
		}
	}
	if kernel, err = images.HostKernel(c.kernelVersion); err != nil {
		return kernel, comp, nil, nil, &imageErr{ExitFailure, fmt.Errorf("image: %w", err)}
	}
	for _, f := range c.hostKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return kernel, comp, nil, nil, imageUsagef("image: --host-key: %v", err)
		}
		hk, err := images.ParseHostKey(data)
		if err != nil {
			return kernel, comp, nil, nil, imageUsagef("image: --host-key %s: %v", f, err)
		}
		hostKeys = append(hostKeys, hk)
	}
	if c.authorizedKeys != "" {
		data, err := os.ReadFile(c.authorizedKeys)
		if err != nil {
			return kernel, comp, nil, nil, imageUsagef("image: --authorized-keys: %v", err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				authorized = append(authorized, l)
			}
		}
	}
	return kernel, comp, hostKeys, authorized, nil
}

func parseImageFlags(fs *pflag.FlagSet, args []string, verb string) *imageErr {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return imageUsagef("image %s: %v", verb, err)
	}
	if fs.NArg() > 0 {
		return imageUsagef("image %s: unexpected arguments %q", verb, fs.Args())
	}
	return nil
}

func imageInstaller(ctx context.Context, env Env, args []string) *imageErr {
	fs := pflag.NewFlagSet("nixos-via image installer", pflag.ContinueOnError)
	var c imageCommon
	var agent string
	c.register(fs, "output tarball (.tar.gz)")
	fs.StringVar(&agent, "agent", "", "static nixos-via binary to include (default: this executable)")
	if ierr := parseImageFlags(fs, args, "installer"); ierr != nil {
		return ierr
	}
	if c.help {
		fmt.Fprint(env.Stdout, imageUsage, "\nFlags of image installer:\n", fs.FlagUsages())
		return nil
	}
	if c.out == "" {
		return imageUsagef("image installer: --out FILE.tar.gz is required")
	}
	if !strings.HasSuffix(c.out, ".tar.gz") && !strings.HasSuffix(c.out, ".tgz") {
		return imageUsagef("image installer: --out %q: want a .tar.gz file name", c.out)
	}
	if agent != "" {
		if err := images.AgentFromPath(agent); err != nil {
			return imageUsagef("image installer: --agent: %v", err)
		}
	}
	kernel, comp, hostKeys, authorized, ierr := c.load()
	if ierr != nil {
		return ierr
	}
	inst, err := images.BuildInstaller(ctx, c.out, images.InstallerOptions{
		Kernel: kernel, Agent: agent, HostKeys: hostKeys, AuthorizedKeys: authorized,
		Cmdline: c.cmdline, Compression: comp, Events: imageEvents(env),
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &imageErr{ExitInterrupted, err}
		}
		return &imageErr{ExitFailure, err}
	}
	fmt.Fprintf(env.Stdout, "%s\t%d bytes (kernel %d, initrd %d)\n", inst.Path, inst.Bytes, inst.KernelBytes, inst.InitrdBytes)
	return nil
}

func imageProvider(ctx context.Context, env Env, args []string) *imageErr {
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
	if ierr := parseImageFlags(fs, args, "provider"); ierr != nil {
		return ierr
	}
	if c.help {
		fmt.Fprint(env.Stdout, imageUsage, "\nFlags of image provider:\n", fs.FlagUsages())
		return nil
	}
	if c.out == "" {
		return imageUsagef("image provider: --out DIR is required")
	}
	if len(c.hostKeyFiles) == 0 {
		return imageUsagef("image provider: at least one --host-key FILE is required")
	}
	if user == "" && (passwordEnv != "" || userKeys != "") {
		return imageUsagef("image provider: --user-password-env and --user-authorized-keys need --user")
	}
	var password string
	if passwordEnv != "" {
		getenv := env.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		if password = getenv(passwordEnv); password == "" {
			return imageUsagef("image provider: --user-password-env: $%s is empty or unset", passwordEnv)
		}
	}
	kernel, comp, hostKeys, authorized, ierr := c.load()
	if ierr != nil {
		return ierr
	}
	var ukeys []string
	if userKeys != "" {
		data, err := os.ReadFile(userKeys)
		if err != nil {
			return imageUsagef("image provider: --user-authorized-keys: %v", err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				ukeys = append(ukeys, l)
			}
		}
	}
	p, err := images.BuildProvider(ctx, c.out, images.ProviderOptions{
		Kernel: kernel, HostKeys: hostKeys, RootAuthorizedKeys: authorized,
		User: user, UserPassword: password, UserAuthorizedKeys: ukeys,
		Cmdline: c.cmdline, Hostname: hostname, NoKexecTools: noKexec,
		Compression: comp, Events: imageEvents(env),
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &imageErr{ExitInterrupted, err}
		}
		return &imageErr{ExitFailure, err}
	}
	fmt.Fprintf(env.Stdout, "kernel\t%s\ninitrd\t%s\t%d bytes\ncmdline\t%s\n", p.Kernel, p.Initrd, p.InitrdBytes, p.Cmdline)
	if bootDisk != "" {
		if err := images.BuildBootDisk(ctx, bootDisk, p.Kernel, p.Initrd, p.Cmdline); err != nil {
			return &imageErr{ExitFailure, err}
		}
		fmt.Fprintf(env.Stdout, "boot disk\t%s\n", bootDisk)
	}
	return nil
}
