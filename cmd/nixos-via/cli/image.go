package cli

import (
	"context"
	"fmt"

	"github.com/nixos-via/nixos-via/images"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/flagtable"
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

// imageFlags are the flags both verbs share, bound to in.
func imageFlags(in *images.Inputs, outArg, outHelp string, help *bool) []flagtable.Flag {
	return []flagtable.Flag{
		{Name: "out", Short: "o", Arg: outArg, Help: outHelp, To: &in.Out},
		{Name: "kernel-version", Arg: "VERSION", Help: "kernel from /boot and /lib/modules (default: newest *-cloud-amd64)", To: &in.KernelVersion},
		{Name: "compression", Arg: "NAME", Help: "initrd compression: gzip, zstd or none", To: &in.Compression},
		{Name: "cmdline", Arg: "ARGS", Help: "extra kernel command line, e.g. sysctl.kernel.kexec_load_disabled=1", To: &in.Cmdline},
		{Name: "host-key", Arg: "FILE", Help: "SSH host private key file (repeatable)", To: func(v []string) error { in.HostKeyFiles = v; return nil }},
		{Name: "authorized-keys", Arg: "FILE", Help: "authorized_keys file for root", To: &in.AuthorizedKeys},
		{Name: "help", Short: "h", Help: "show help", To: help},
	}
}

// parseImage parses a verb's command line and says whether to go on: not
// after an error, nor after printing the help.
func parseImage(env Env, verb string, table []flagtable.Flag, args []string) (bool, error) {
	noArgs := func(pos []string) error {
		if len(pos) > 0 {
			return usagef("unexpected arguments %q", pos)
		}
		return nil
	}
	fs, help, err := flagtable.Parse(table, args, noArgs)
	if help {
		err = noArgs(fs.Args()) // image checks its arguments before --help
	}
	if err != nil {
		return false, usagef("image %s: %v", verb, err)
	}
	if help {
		fmt.Fprint(env.Stdout, imageUsage, "\nFlags of image "+verb+":\n", fs.FlagUsages())
	}
	return !help, nil
}

func imageInstaller(ctx context.Context, env Env, args []string) error {
	var in images.InstallerInputs
	var help bool
	table := append(imageFlags(&in.Inputs, "FILE.tar.gz", "output tarball (.tar.gz)", &help),
		flagtable.Flag{Name: "agent", Arg: "PATH", Help: "static nixos-via binary to include (default: this executable)", To: &in.Agent})
	if ok, err := parseImage(env, "installer", table, args); !ok {
		return err
	}
	inst, err := in.Build(ctx, imageEvents(env))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s\t%d bytes (kernel %d, initrd %d)\n", inst.Path, inst.Bytes, inst.KernelBytes, inst.InitrdBytes)
	return nil
}

func imageProvider(ctx context.Context, env Env, args []string) error {
	var in images.ProviderInputs
	var help bool
	var bootDisk string
	table := append(imageFlags(&in.Inputs, "DIR", "output directory", &help), []flagtable.Flag{
		{Name: "boot-disk", Arg: "FILE", Help: "also write a GPT disk image (raw, or qcow2 by its name) whose ESP boots the provider with systemd-boot under UEFI", To: &bootDisk},
		{Name: "user", Arg: "NAME", Help: "non-root login user in group sudo", To: &in.User},
		{Name: "user-password-env", Arg: "VAR", Help: "read the user's sudo password from this environment variable (default: sudo without password)", To: &in.UserPasswordEnv},
		{Name: "user-authorized-keys", Arg: "FILE", Help: "authorized_keys file for --user (default: root's)", To: &in.UserAuthorizedKeys},
		{Name: "hostname", Arg: "NAME", Help: "host name (default provider)", To: &in.Hostname},
		{Name: "no-kexec-tools", Help: "leave kexec-tools out", To: &in.NoKexecTools},
	}...)
	if ok, err := parseImage(env, "provider", table, args); !ok {
		return err
	}
	p, err := in.Build(ctx, env.Getenv, imageEvents(env))
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
