package target

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Facts is what one probe round trip learns about a host.
type Facts struct {
	OS            string `json:"os"`   // uname -s, e.g. Linux
	Arch          string `json:"arch"` // uname -m, e.g. x86_64
	Kernel        string `json:"kernel"`
	MemTotalKiB   int64  `json:"memTotalKiB"`
	MemAvailKiB   int64  `json:"memAvailableKiB"`
	Firmware      string `json:"firmware"` // "efi" or "bios"
	SecureBoot    string `json:"secureBoot"`
	OSID          string `json:"osId"` // /etc/os-release ID
	OSName        string `json:"osName"`
	IsNixOS       bool   `json:"isNixos"`
	IsInstaller   bool   `json:"isInstaller"` // VARIANT_ID=installer
	User          string `json:"user"`
	IsRoot        bool   `json:"isRoot"`
	Escalation    string `json:"escalation"` // none, sudo, doas, or "" when none works
	SudoPassword  bool   `json:"sudoNeedsPassword"`
	Container     string `json:"container"` // none, docker, lxc, podman, systemd-nspawn, wsl ...
	Virt          string `json:"virt"`      // none, kvm, xen, qemu, vmware, ... or unknown
	KexecDisabled bool   `json:"kexecLoadDisabled"`
	Lockdown      string `json:"lockdown"` // none, integrity, confidentiality, or "" when unknown
	TmpFreeKiB    int64  `json:"tmpFreeKiB"`
	Disks         []Disk `json:"disks"`
	Tools         Tools  `json:"tools"`
	HasIPv6Only   bool   `json:"ipv6Only"`
	// HostKeys are the public host keys in /etc/ssh (authorized_keys
	// lines), the ones an installer kexec'd into would present.
	HostKeys []string `json:"hostKeys,omitempty"`
	// CurrentSystem is where /run/current-system points on NixOS ("" elsewhere).
	CurrentSystem string `json:"currentSystem,omitempty"`
}

// Disk is one whole block device.
type Disk struct {
	Name      string   `json:"name"` // vda
	Path      string   `json:"path"` // /dev/vda
	SizeBytes int64    `json:"sizeBytes"`
	Model     string   `json:"model,omitempty"`
	Removable bool     `json:"removable"`
	ByID      []string `json:"byId,omitempty"` // /dev/disk/by-id names
	Mounted   []string `json:"mounted,omitempty"`
}

// Tools says which programs exist on the host.
type Tools struct {
	Tar        bool `json:"tar"`
	Cpio       bool `json:"cpio"`
	Setsid     bool `json:"setsid"`
	SetsidWait bool `json:"setsidWait"`
	Curl       bool `json:"curl"`
	Wget       bool `json:"wget"`
	SFTPServer bool `json:"sftpServer"`
	IP         bool `json:"ip"`
	Kexec      bool `json:"kexec"`
	Sudo       bool `json:"sudo"`
	Doas       bool `json:"doas"`
	// Commands says, for each of ProbedCommands, whether the host has it.
	Commands map[string]bool `json:"commands,omitempty"`
}

// ProbedCommands are the commands the facts probe looks for by name
// (command -v, with the login user's PATH): the fields of Tools, and what
// a kexec/run calls on the host (the nixos-images one; see
// kexec/CONTRACT.md).
var ProbedCommands = []string{"tar", "cpio", "setsid", "curl", "wget", "ip", "kexec", "sudo", "doas",
	"sh", "cat", "cp", "dirname", "find", "grep", "gzip", "mkdir", "mktemp", "nohup", "readlink", "rm", "sleep", "sort", "uname"}

// factsScript is POSIX sh (busybox ash, dash, bash) printing key=value
// lines, and one "disk ..." line per whole disk. It runs as the login user
// and needs no tool beyond a shell, cat and ls.
const factsScript = `
has() { command -v "$1" >/dev/null 2>&1; }
kv() { printf '%s=%s\n' "$1" "$2"; }
kv os "$(uname -s)"
kv arch "$(uname -m)"
kv kernel "$(uname -r)"
while read -r k v _; do
  case "$k" in MemTotal:) kv memtotal "$v";; MemAvailable:) kv memavail "$v";; esac
done < /proc/meminfo
if [ -d /sys/firmware/efi ]; then kv firmware efi; else kv firmware bios; fi
sb=
for f in /sys/firmware/efi/efivars/SecureBoot-*; do
  [ -r "$f" ] && sb=$(od -An -tu1 "$f" 2>/dev/null | awk '{print $NF}')
done
kv secureboot "$sb"
if [ -r /etc/os-release ]; then
  ( . /etc/os-release; kv osid "$ID"; kv osidlike "$ID_LIKE"; kv osname "$PRETTY_NAME"; kv variant "$VARIANT_ID" )
fi
kv currentsystem "$(readlink /run/current-system 2>/dev/null)"
kv uid "$(id -u)"
kv user "$(id -un 2>/dev/null)"
esc=
if [ "$(id -u)" = 0 ]; then esc=none
elif has sudo && sudo -n true >/dev/null 2>&1; then esc=sudo-nopasswd
elif has sudo; then esc=sudo
elif has doas && doas -n true >/dev/null 2>&1; then esc=doas
fi
kv escalation "$esc"
ctr=none
if has systemd-detect-virt; then ctr=$(systemd-detect-virt --container 2>/dev/null) || ctr=none; fi
if [ "$ctr" = none ]; then
  if [ -e /.dockerenv ]; then ctr=docker
  elif [ -e /run/.containerenv ]; then ctr=podman
  elif grep -qa 'container=' /proc/1/environ 2>/dev/null; then ctr=$(tr '\0' '\n' < /proc/1/environ | sed -n 's/^container=//p' | head -n1)
  elif grep -qi microsoft /proc/sys/kernel/osrelease 2>/dev/null; then ctr=wsl
  fi
fi
kv container "$ctr"
virt=
if has systemd-detect-virt; then virt=$(systemd-detect-virt --vm 2>/dev/null); fi
if [ -z "$virt" ] || [ "$virt" = none ]; then
  if [ -d /proc/xen ] || grep -q xen /sys/hypervisor/type 2>/dev/null; then virt=xen
  elif grep -q '^flags.* hypervisor' /proc/cpuinfo 2>/dev/null; then
    v=$(cat /sys/class/dmi/id/sys_vendor 2>/dev/null)
    case "$v" in QEMU*) virt=qemu;; *VMware*) virt=vmware;; *Microsoft*) virt=microsoft;; Xen*) virt=xen;; *) virt=unknown-vm;; esac
  else virt=none
  fi
fi
kv virt "$virt"
kv kexecdisabled "$(cat /proc/sys/kernel/kexec_load_disabled 2>/dev/null)"
kv lockdown "$(cat /sys/kernel/security/lockdown 2>/dev/null)"
kv tmpfree "$(df -Pk /tmp 2>/dev/null | awk 'NR==2{print $4}')"
for t in @COMMANDS@; do
  if has "$t"; then kv "has_$t" y; else kv "has_$t" n; fi
done
if has setsid && setsid --wait true >/dev/null 2>&1; then kv has_setsidwait y; else kv has_setsidwait n; fi
sftp=n
for p in /usr/lib/openssh/sftp-server /usr/libexec/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/openssh/sftp-server /run/current-system/sw/libexec/sftp-server; do
  [ -x "$p" ] && sftp=y
done
has sftp-server && sftp=y
kv has_sftpserver "$sftp"
ipv6only=n
if has ip && ! ip r g 1 >/dev/null 2>&1 && ip -6 r g :: >/dev/null 2>&1; then ipv6only=y; fi
kv ipv6only "$ipv6only"
for f in /etc/ssh/ssh_host_*_key.pub; do
  [ -r "$f" ] && while read -r l; do kv hostkey "$l"; done < "$f"
done
for d in /sys/block/*; do
  n=${d##*/}
  case "$n" in loop*|ram*|zram*|dm-*|md*|sr*|fd*|nbd*) continue;; esac
  [ -e "$d/device" ] || continue
  size=$(cat "$d/size" 2>/dev/null)
  model=$(cat "$d/device/model" 2>/dev/null | tr -s ' \t' '  ' | sed 's/ *$//')
  rm=$(cat "$d/removable" 2>/dev/null)
  ids=
  if [ -d /dev/disk/by-id ]; then
    for l in /dev/disk/by-id/*; do
      [ -L "$l" ] || continue
      t=$(readlink "$l"); [ "${t##*/}" = "$n" ] && ids="$ids${ids:+,}${l##*/}"
    done
  fi
  mnt=
  while read -r dev mp _; do
    case "$dev" in /dev/"$n"|/dev/"$n"[0-9]*|/dev/"$n"p[0-9]*) mnt="$mnt${mnt:+,}$mp";; esac
  done < /proc/mounts
  for h in "$d"/*/holders/* "$d"/holders/*; do
    [ -e "$h" ] && mnt="$mnt${mnt:+,}holder:${h##*/}"
  done
  printf 'disk\tname=%s\tsize=%s\tmodel=%s\trm=%s\tids=%s\tmnt=%s\n' "$n" "$size" "$model" "$rm" "$ids" "$mnt"
done
echo end=ok
`

// ProbeFacts runs the facts script in one round trip, as the login user.
func (c *Conn) ProbeFacts(ctx context.Context) (*Facts, error) {
	out, err := c.Script(ctx, Script{Body: strings.ReplaceAll(factsScript, "@COMMANDS@", strings.Join(ProbedCommands, " ")), AsLogin: true})
	if err != nil {
		return nil, fmt.Errorf("probe facts on %s: %w", c.res.Addr(), err)
	}
	f, err := ParseFacts(out)
	if err != nil {
		return nil, fmt.Errorf("probe facts on %s: %w", c.res.Addr(), err)
	}
	// The host's key files, read over this verified connection, belong to
	// its key set.
	var keys []ssh.PublicKey
	for _, line := range f.HostKeys {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
			keys = append(keys, k)
		}
	}
	c.AddHostKeys(keys)
	return f, nil
}

// ParseFacts reads the probe's output.
func ParseFacts(out string) (*Facts, error) {
	f := &Facts{}
	var rest strings.Builder
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.HasPrefix(line, "disk\t") {
			d, err := parseDisk(line)
			if err != nil {
				return nil, err
			}
			f.Disks = append(f.Disks, d)
			continue
		}
		rest.WriteString(line + "\n")
	}
	values := ParseValues(rest.String())
	f.HostKeys = values["hostkey"]
	if values.Get("end") != "ok" {
		keys := len(values)
		if values.Has("hostkey") {
			keys--
		}
		return nil, fmt.Errorf("probe output ended early (no end marker); got %d lines", keys)
	}
	f.OS, f.Arch, f.Kernel = values.Get("os"), values.Get("arch"), values.Get("kernel")
	f.MemTotalKiB = atoi64(values.Get("memtotal"))
	f.MemAvailKiB = atoi64(values.Get("memavail"))
	f.Firmware = values.Get("firmware")
	switch values.Get("secureboot") {
	case "1":
		f.SecureBoot = "enabled"
	case "0":
		f.SecureBoot = "disabled"
	default:
		f.SecureBoot = "unknown"
	}
	f.OSID, f.OSName = values.Get("osid"), values.Get("osname")
	f.IsNixOS = f.OSID == "nixos" || containsWord(values.Get("osidlike"), "nixos")
	f.IsInstaller = values.Get("variant") == "installer"
	f.CurrentSystem = values.Get("currentsystem")
	f.User = values.Get("user")
	f.IsRoot = values.Get("uid") == "0"
	switch values.Get("escalation") {
	case "none":
		f.Escalation = string(EscalateNone)
	case "sudo-nopasswd":
		f.Escalation = string(EscalateSudo)
	case "sudo":
		f.Escalation, f.SudoPassword = string(EscalateSudo), true
	case "doas":
		f.Escalation = string(EscalateDoas)
	}
	f.Container = orDefault(values.Get("container"), "none")
	f.Virt = orDefault(values.Get("virt"), "unknown")
	f.KexecDisabled = values.Get("kexecdisabled") == "1"
	f.Lockdown = parseLockdown(values.Get("lockdown"))
	f.TmpFreeKiB = atoi64(values.Get("tmpfree"))
	yes := func(k string) bool { return values.Get("has_"+k) == "y" }
	f.Tools = Tools{Tar: yes("tar"), Cpio: yes("cpio"), Setsid: yes("setsid"), SetsidWait: yes("setsidwait"),
		Curl: yes("curl"), Wget: yes("wget"), SFTPServer: yes("sftpserver"), IP: yes("ip"), Kexec: yes("kexec"),
		Sudo: yes("sudo"), Doas: yes("doas"), Commands: map[string]bool{}}
	for _, c := range ProbedCommands {
		if values.Has("has_" + c) {
			f.Tools.Commands[c] = yes(c)
		}
	}
	f.HasIPv6Only = values.Get("ipv6only") == "y"
	sort.Slice(f.Disks, func(i, j int) bool { return f.Disks[i].Name < f.Disks[j].Name })
	return f, nil
}

func parseDisk(line string) (Disk, error) {
	// Its tab-separated fields are key=value each.
	fields := ParseValues(strings.ReplaceAll(strings.TrimPrefix(line, "disk\t"), "\t", "\n"))
	d := Disk{
		Name:      fields.Get("name"),
		SizeBytes: atoi64(fields.Get("size")) * 512,
		Model:     strings.TrimSpace(fields.Get("model")),
		Removable: fields.Get("rm") == "1",
	}
	if v := fields.Get("ids"); v != "" {
		d.ByID = strings.Split(v, ",")
	}
	if v := fields.Get("mnt"); v != "" {
		d.Mounted = strings.Split(v, ",")
	}
	if d.Name == "" {
		return d, fmt.Errorf("probe disk line without a name: %q", line)
	}
	d.Path = "/dev/" + d.Name
	return d, nil
}

// parseLockdown picks the active mode from "[none] integrity confidentiality".
func parseLockdown(s string) string {
	for _, w := range strings.Fields(s) {
		if strings.HasPrefix(w, "[") && strings.HasSuffix(w, "]") {
			return strings.Trim(w, "[]")
		}
	}
	return ""
}

func containsWord(s, w string) bool {
	for _, x := range strings.Fields(s) {
		if x == w {
			return true
		}
	}
	return false
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n
}
