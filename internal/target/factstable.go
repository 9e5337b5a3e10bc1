package target

import (
	"fmt"
	"io"
	"strings"
)

// WriteTable writes the facts as the human table of `nixos-via facts`,
// for host.
func (f *Facts) WriteTable(w io.Writer, host string) {
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
		fmt.Fprintf(w, "  %-12s %10s  %-24s%s\n", d.Path, DiskSize(d.SizeBytes), model, extra)
	}
}

func toolList(t Tools) string {
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

// DiskSize is a disk's size as the facts table and the wipe list print it.
func DiskSize(b int64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", b>>20)
}
