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

// imageFlags are the flags both verbs share, and what they load.
type imageFlags struct {
	fs                                                       *pflag.FlagSet
	verb, outArg                                             string
	out, kernelVersion, compression, cmdline, authorizedKeys string
	hostKeyFiles                                             []string
	help                                                     bool

	kernel     images.Kernel
	comp       images.Compression
	hostKeys   []images.HostKey
	authorized []string
}

func newImageFlags(verb, outArg, outHelp string) *imageFlags {
	c := &imageFlags{fs: pflag.NewFlagSet("nixos-via image "+verb, pflag.ContinueOnError), verb: verb, outArg: outArg}
	c.fs.SetOutput(io.Discard)
	c.fs.StringVarP(&c.out, "out", "o", "", outHelp)
	c.fs.StringVar(&c.kernelVersion, "kernel-version", "", "kernel from /boot and /lib/modules (default: newest *-cloud-amd64)")
	c.fs.StringVar(&c.compression, "compression", "", "initrd compression: gzip, zstd or none")
	c.fs.StringVar(&c.cmdline, "cmdline", "", "extra kernel command line, e.g. sysctl.kernel.kexec_load_disabled=1")
	c.fs.StringArrayVar(&c.hostKeyFiles, "host-key", nil, "SSH host private key file (repeatable)")
	c.fs.StringVar(&c.authorizedKeys, "authorized-keys", "", "authorized_keys file for root")
	c.fs.BoolVarP(&c.help, "help", "h", false, "show help")
	return c
}

// parse parses args and says whether to go on: not after an error, nor
// after printing the help.
func (c *imageFlags) parse(env Env, args []string) (bool, error) {
	if err := c.fs.Parse(args); err != nil {
		return false, usagef("image %s: %v", c.verb, err)
	}
	if c.fs.NArg() > 0 {
		return false, usagef("image %s: unexpected arguments %q", c.verb, c.fs.Args())
	}
	if c.help {
		fmt.Fprint(env.Stdout, imageUsage, "\nFlags of image "+c.verb+":\n", c.fs.FlagUsages())
		return false, nil
	}
	if c.out == "" {
		return false, usagef("image %s: --out %s is required", c.verb, c.outArg)
	}
	return true, nil
}

// load reads the kernel, the compression and the key files.
func (c *imageFlags) load() (err error) {
	if c.compression != "" {
		if c.comp, err = images.ParseCompression(c.compression); err != nil {
			return usagef("image: --compression: %v", err)
		}
	}
	if c.kernel, err = images.HostKernel(c.kernelVersion); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	for _, f := range c.hostKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return usagef("image: --host-key: %v", err)
		}
		hk, err := images.ParseHostKey(data)
		if err != nil {
			return usagef("image: --host-key %s: %v", f, err)
		}
		c.hostKeys = append(c.hostKeys, hk)
	}
	if c.authorizedKeys != "" {
		if c.authorized, err = images.ReadAuthorizedKeys(c.authorizedKeys); err != nil {
			return usagef("image: --authorized-keys: %v", err)
		}
	}
	return nil
}

func imageInstaller(ctx context.Context, env Env, args []string) error {
	c := newImageFlags("installer", "FILE.tar.gz", "output tarball (.tar.gz)")
	agent := c.fs.String("agent", "", "static nixos-via binary to include (default: this executable)")
	if ok, err := c.parse(env, args); !ok {
		return err
	}
	if !strings.HasSuffix(c.out, ".tar.gz") && !strings.HasSuffix(c.out, ".tgz") {
		return usagef("image installer: --out %q: want a .tar.gz file name", c.out)
	}
	if *agent != "" {
		if err := images.AgentFromPath(*agent); err != nil {
			return usagef("image installer: --agent: %v", err)
		}
	}
	if err := c.load(); err != nil {
		return err
	}
	inst, err := images.BuildInstaller(ctx, c.out, images.InstallerOptions{
		Kernel: c.kernel, Agent: *agent, HostKeys: c.hostKeys, AuthorizedKeys: c.authorized,
		Cmdline: c.cmdline, Compression: c.comp, Events: imageEvents(env),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s\t%d bytes (kernel %d, initrd %d)\n", inst.Path, inst.Bytes, inst.KernelBytes, inst.InitrdBytes)
	return nil
}

func imageProvider(ctx context.Context, env Env, args []string) error {
	c := newImageFlags("provider", "DIR", "output directory")
	bootDisk := c.fs.String("boot-disk", "", "also write a GPT disk image (raw, or qcow2 by its name) whose ESP boots the provider with systemd-boot under UEFI")
	user := c.fs.String("user", "", "non-root login user in group sudo")
	passwordEnv := c.fs.String("user-password-env", "", "read the user's sudo password from this environment variable (default: sudo without password)")
	userKeys := c.fs.String("user-authorized-keys", "", "authorized_keys file for --user (default: root's)")
	hostname := c.fs.String("hostname", "", "host name (default provider)")
	noKexec := c.fs.Bool("no-kexec-tools", false, "leave kexec-tools out")
	if ok, err := c.parse(env, args); !ok {
		return err
	}
	if len(c.hostKeyFiles) == 0 {
		return usagef("image provider: at least one --host-key FILE is required")
	}
	if *user == "" && (*passwordEnv != "" || *userKeys != "") {
		return usagef("image provider: --user-password-env and --user-authorized-keys need --user")
	}
	var password string
	if *passwordEnv != "" {
		if password = env.Getenv(*passwordEnv); password == "" {
			return usagef("image provider: --user-password-env: $%s is empty or unset", *passwordEnv)
		}
	}
	if err := c.load(); err != nil {
		return err
	}
	var ukeys []string
	if *userKeys != "" {
		var err error
		if ukeys, err = images.ReadAuthorizedKeys(*userKeys); err != nil {
			return usagef("image provider: --user-authorized-keys: %v", err)
		}
	}
	p, err := images.BuildProvider(ctx, c.out, images.ProviderOptions{
		Kernel: c.kernel, HostKeys: c.hostKeys, RootAuthorizedKeys: c.authorized,
		User: *user, UserPassword: password, UserAuthorizedKeys: ukeys,
		Cmdline: c.cmdline, Hostname: *hostname, NoKexecTools: *noKexec,
		Compression: c.comp, Events: imageEvents(env),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "kernel\t%s\ninitrd\t%s\t%d bytes\ncmdline\t%s\n", p.Kernel, p.Initrd, p.InitrdBytes, p.Cmdline)
	if *bootDisk != "" {
		if err := images.BuildBootDisk(ctx, *bootDisk, p.Kernel, p.Initrd, p.Cmdline); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "boot disk\t%s\n", *bootDisk)
	}
	return nil
}
