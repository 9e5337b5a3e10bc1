package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/internal/target"
)

// connFlags are the flags that say how to reach the host.
type connFlags struct {
	Host            string
	IdentityFile    string
	Port            int
	SSHOptions      []string
	EnvPassword     bool
	HostKey         string   // a single pin (the facts subcommand)
	HostKeys        []string // --host-key, repeatable
	SudoPasswordEnv string
	TimeoutConnect  time.Duration
	Debug           bool
}

func (o *Options) conn() connFlags {
	return connFlags{Host: o.Host, IdentityFile: o.IdentityFile, Port: o.Port, SSHOptions: o.SSHOptions,
		EnvPassword: o.EnvPassword, HostKey: o.HostKey, HostKeys: o.HostKeys, SudoPasswordEnv: o.SudoPasswordEnv, TimeoutConnect: o.TimeoutConnect, Debug: o.Debug}
}

// terminal returns the file behind r when it is a terminal.
func terminal(r any) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// targetOptions turns the flags into target.Options. Secrets come from the
// environment or a terminal prompt, never from argv.
func (c connFlags) targetOptions(env Env, warn func(string)) (target.Options, error) {
	o := target.Options{
		Destination: c.Host,
		Port:        c.Port,
		SSHOptions:  c.SSHOptions,
		AgentSocket: env.Getenv("SSH_AUTH_SOCK"),
		HostKeyPin:  c.HostKey,
		HostKeyPins: c.HostKeys,
		Warn:        warn,
	}
	if c.Debug {
		o.Trace = func(cmd string) { fmt.Fprintf(env.Stderr, "+ ssh: %s\n", cmd) }
	}
	if c.IdentityFile != "" {
		o.IdentityFiles = []string{c.IdentityFile}
	}
	if c.EnvPassword {
		o.Password = env.Getenv("SSHPASS")
		if o.Password == "" {
			return o, usagef("--env-password: $SSHPASS is empty")
		}
	}
	if c.SudoPasswordEnv != "" {
		o.SudoPassword = env.Getenv(c.SudoPasswordEnv)
		if o.SudoPassword == "" {
			return o, usagef("--sudo-password-env %s: $%s is empty", c.SudoPasswordEnv, c.SudoPasswordEnv)
		}
	}
	if in, ok := terminal(env.Stdin); ok {
		o.Prompt = func(q string, echo bool) (string, error) {
			fmt.Fprint(env.Stderr, q)
			if echo {
				var s string
				_, err := fmt.Fscanln(in, &s)
				return s, err
			}
			b, err := term.ReadPassword(int(in.Fd()))
			fmt.Fprintln(env.Stderr)
			return string(b), err
		}
	}
	return o, nil
}

// printFacts writes the human table.
func printFacts(w io.Writer, host string, f *target.Facts) {
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	esc := f.Escalation
	if esc == "" {
		esc = "none available (not root, no sudo or doas)"
	} else if f.SudoPassword {
		esc += " (with password)"
	}
	lock := f.Lockdown
	if lock == "" {
		lock = "unknown"
	}
	rows := [][2]string{
		{"host", host},
		{"os", fmt.Sprintf("%s %s (%s)", f.OS, f.Kernel, orNA(f.OSName))},
		{"arch", f.Arch},
		{"memory", fmt.Sprintf("%s total, %s available", mib(f.MemTotalKiB*1024), mib(f.MemAvailKiB*1024))},
		{"firmware", fmt.Sprintf("%s (secure boot %s)", f.Firmware, f.SecureBoot)},
		{"nixos", fmt.Sprintf("%s, installer: %s", yn(f.IsNixOS), yn(f.IsInstaller))},
		{"user", fmt.Sprintf("%s (root: %s, escalation: %s)", f.User, yn(f.IsRoot), esc)},
		{"virtualisation", fmt.Sprintf("%s, container: %s", f.Virt, f.Container)},
		{"kexec", fmt.Sprintf("load disabled: %s, lockdown: %s", yn(f.KexecDisabled), lock)},
		{"tools", toolList(f.Tools)},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-15s %s\n", r[0], r[1])
	}
	fmt.Fprintf(w, "%-15s %d\n", "disks", len(f.Disks))
	for _, d := range f.Disks {
		extra := ""
		if len(d.Mounted) > 0 {
			extra = "  in use: " + strings.Join(d.Mounted, ",")
		}
		model := d.Model
		if model == "" {
			model = "-"
		}
		fmt.Fprintf(w, "  %-12s %10s  %-24s%s\n", d.Path, diskorun.DiskSize(d.SizeBytes), model, extra)
	}
}

func toolList(t target.Tools) string {
	var have, lack []string
	for _, x := range []struct {
		n string
		b bool
	}{{"tar", t.Tar}, {"cpio", t.Cpio}, {"setsid", t.Setsid}, {"curl", t.Curl}, {"wget", t.Wget},
		{"sftp-server", t.SFTPServer}, {"ip", t.IP}, {"kexec", t.Kexec}, {"sudo", t.Sudo}, {"doas", t.Doas}} {
		if x.b {
			have = append(have, x.n)
		} else {
			lack = append(lack, x.n)
		}
	}
	return fmt.Sprintf("%s (missing: %s)", orNA(strings.Join(have, " ")), orNA(strings.Join(lack, " ")))
}

func orNA(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }
