package disko

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func mustParse(t *testing.T, layout string) *Layout {
	t.Helper()
	l, err := Parse([]byte(layout))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return l
}

func readCase(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(casesDir, name+".json"))
	if err != nil {
		t.Skipf("shared case %s not available: %v", name, err)
	}
	return b
}

func planLines(t *testing.T, l *Layout, mode Mode) []string {
	t.Helper()
	p, err := l.Plan(mode, RenderOptions{})
	if err != nil {
		t.Fatalf("Plan(%s): %v", mode, err)
	}
	var out []string
	for _, s := range p.Steps {
		out = append(out, strings.Join(s.Argv, " "))
	}
	return out
}

func contains(lines []string, want string) int {
	for i, l := range lines {
		if l == want {
			return i
		}
	}
	return -1
}

// disko §5.1 (regression of PR #1057): swap partitions were never swapon'ed
// by the mount mode.
func TestFixSwapActivatedInMountMode(t *testing.T) {
	l, err := Parse(readCase(t, "18-swap-partitions"))
	if err != nil {
		t.Fatal(err)
	}
	lines := planLines(t, l, ModeMount)
	if contains(lines, "swapon --discard --options=defaults /dev/disk/by-partlabel/disk-main-plainSwap") < 0 {
		t.Errorf("mount plan does not activate the plain swap partition:\n%s", strings.Join(lines, "\n"))
	}
	for _, line := range lines {
		if strings.Contains(line, "encryptedSwap") {
			t.Errorf("randomEncryption swap must be left to NixOS, got %q", line)
		}
	}
	script, _ := l.Script(ModeMount, RenderOptions{})
	if !strings.Contains(script, `"${DISKO_SKIP_SWAP-}" != 1`) {
		t.Error("swapon is not skippable with DISKO_SKIP_SWAP=1 (disko-install sets it)")
	}
}

// disko §5.2: with efiGptPartitionFirst = true upstream rendered
// `sgdisk -h 1"/dev/sdb"` (index and device glued into one word).
func TestFixHybridMBRQuoting(t *testing.T) {
	raw := strings.Replace(string(readCase(t, "23-hybrid-mbr")), `"efiGptPartitionFirst": false`, `"efiGptPartitionFirst": true`, 1)
	l := mustParse(t, raw)
	lines := planLines(t, l, ModeFormat)
	if contains(lines, "sgdisk -h 1 /dev/sdb") < 0 {
		t.Errorf("want `sgdisk -h 1 /dev/sdb` as separate words, plan:\n%s", strings.Join(lines, "\n"))
	}
	script, _ := l.Script(ModeFormat, RenderOptions{})
	if !strings.Contains(script, `disko_run sgdisk -h 1 "$disko_d`) {
		t.Errorf("script does not pass the device as its own word")
	}
}

// disko §5.3 (#1263, PR #1281): mount mode opened only the last LUKS
// partition of a disk.
func TestFixAllLUKSPartitionsOpened(t *testing.T) {
	l := mustParse(t, `{"disk":{"main":{"device":"/dev/vda","content":{"type":"gpt","partitions":{
		"a":{"size":"100M","content":{"type":"luks","name":"cra","settings":{"keyFile":"/tmp/k"},"content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}},
		"b":{"size":"100%","content":{"type":"luks","name":"crb","settings":{"keyFile":"/tmp/k"},"content":{"type":"filesystem","format":"ext4","mountpoint":"/data"}}}}}}}}`)
	lines := planLines(t, l, ModeMount)
	for _, want := range []string{
		"cryptsetup open /dev/disk/by-partlabel/disk-main-a cra --key-file /tmp/k",
		"cryptsetup open /dev/disk/by-partlabel/disk-main-b crb --key-file /tmp/k",
	} {
		if contains(lines, want) < 0 {
			t.Errorf("mount plan lacks %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	un := planLines(t, l, ModeUnmount)
	if contains(un, "cryptsetup close crb") < 0 || contains(un, "cryptsetup close cra") < 0 {
		t.Errorf("unmount plan does not close both containers:\n%s", strings.Join(un, "\n"))
	}
}

// disko §5.4: LUKS inside an LV was never opened by mount nor closed by
// unmount (lvm_vg dropped its children's activation).
func TestFixLUKSInsideLVM(t *testing.T) {
	l := mustParse(t, `{"disk":{"d":{"device":"/dev/vda","content":{"type":"gpt","partitions":{"pv":{"size":"100%","content":{"type":"lvm_pv","vg":"vg0"}}}}}},
		"lvm_vg":{"vg0":{"type":"lvm_vg","lvs":{"secret":{"size":"100M","content":{"type":"luks","name":"lvcrypt","passwordFile":"/tmp/pw","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`)
	mount := planLines(t, l, ModeMount)
	act, open := contains(mount, "vgchange -a y vg0"), contains(mount, "cryptsetup open /dev/vg0/secret lvcrypt --key-file @passwordfile:/tmp/pw")
	if act < 0 || open < 0 || open < act {
		t.Errorf("mount must activate vg0 and then open lvcrypt:\n%s", strings.Join(mount, "\n"))
	}
	un := planLines(t, l, ModeUnmount)
	closeIdx, deact := contains(un, "cryptsetup close lvcrypt"), contains(un, "vgchange -a n vg0")
	if closeIdx < 0 || deact < 0 || closeIdx > deact {
		t.Errorf("unmount must close lvcrypt before deactivating vg0:\n%s", strings.Join(un, "\n"))
	}
}

// disko §5.5 (unmerged PR #1148): the key of an encrypted zvol was loaded
// and unloaded by its short name.
func TestFixZvolKeyFullName(t *testing.T) {
	l, err := Parse(readCase(t, "13-zfs-datasets"))
	if err != nil {
		t.Fatal(err)
	}
	if contains(planLines(t, l, ModeMount), "zfs load-key zroot/zfs_encryptedvolume") < 0 {
		t.Error("mount does not load the zvol key by its full name")
	}
	if contains(planLines(t, l, ModeUnmount), "zfs unload-key zroot/zfs_encryptedvolume") < 0 {
		t.Error("unmount does not unload the zvol key by its full name")
	}
	script, _ := l.Script(ModeUnmount, RenderOptions{})
	if !strings.Contains(script, `keystatus zroot/zfs_encryptedvolume 2>/dev/null)" = available ]`) {
		t.Error("zvol unload-key is not guarded by its key status")
	}
}

// disko §5.7: a zpool member holding another signature only printed a
// message; the script went on and failed later on zfs create.
func TestFixZpoolForeignMemberStops(t *testing.T) {
	l, err := Parse(readCase(t, "16-zfs-non-root-pools"))
	if err != nil {
		t.Fatal(err)
	}
	script, _ := l.Script(ModeFormat, RenderOptions{})
	if !strings.Contains(script, `''|zfs_member) ;; *) disko_die 'zpool storage: member /dev/disk/by-partlabel/disk-y-zfs holds another signature`) {
		t.Error("a foreign signature on a zpool member does not stop the script")
	}
}

// disko §5.9: luksAddKey of additionalKeyFiles ran on every format and
// filled a key slot each time.
func TestFixLuksAddKeyIdempotent(t *testing.T) {
	l, err := Parse(readCase(t, "05-luks-keyfile-btrfs"))
	if err != nil {
		t.Fatal(err)
	}
	script, _ := l.Script(ModeFormat, RenderOptions{})
	i := strings.Index(script, "cryptsetup open --test-passphrase")
	j := strings.Index(script, "disko_run cryptsetup luksAddKey")
	if i < 0 || j < 0 || i > j {
		t.Errorf("luksAddKey is not guarded by a test of the additional key")
	}
}

// disko #705 / PR #1149: mount mode relied on udev to assemble md arrays.
func TestFixMdadmAssembledInMountMode(t *testing.T) {
	l, err := Parse(readCase(t, "11-mdadm-raid1"))
	if err != nil {
		t.Fatal(err)
	}
	lines := planLines(t, l, ModeMount)
	want := "mdadm --assemble /dev/md/boot /dev/disk/by-partlabel/disk-one-ESP /dev/disk/by-partlabel/disk-two-ESP"
	if i := contains(lines, want); i < 0 || i > contains(lines, "mount /dev/md/boot /mnt/boot -t vfat -o umask=0077") {
		t.Errorf("mount plan does not assemble /dev/md/boot before mounting it:\n%s", strings.Join(lines, "\n"))
	}
}

// Every rendered script of every case and mode is valid POSIX sh (dash and
// busybox ash parse it) and never traces commands (set -x would print
// passphrases read from files).
func TestScriptsParseAsPOSIXSh(t *testing.T) {
	shells := [][]string{{"dash", "-n"}, {"busybox", "sh", "-n"}}
	var found [][]string
	for _, sh := range shells {
		if _, err := exec.LookPath(sh[0]); err == nil {
			found = append(found, sh)
		}
	}
	if len(found) == 0 {
		t.Skip("neither dash nor busybox is installed")
	}
	modes := []Mode{ModeDestroyFormatMount, ModeFormat, ModeMount, ModeUnmount, ModeDestroy}
	for _, c := range loadCases(t) {
		l, err := Parse(c.raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range modes {
			script, err := l.Script(m, RenderOptions{})
			if err != nil {
				t.Fatalf("%s %s: %v", c.name, m, err)
			}
			if strings.Contains(script, "set -x") || strings.Contains(script, "set -efux") {
				t.Errorf("%s %s: script traces commands", c.name, m)
			}
			for _, sh := range found {
				cmd := exec.Command(sh[0], sh[1:]...)
				cmd.Stdin = strings.NewReader(script)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s %s: %v does not parse the script: %v\n%s", c.name, m, sh, err, out)
				}
			}
		}
	}
}

func TestPassphraseOnlyThroughPipes(t *testing.T) {
	l, err := Parse(readCase(t, "06-luks-passwordfile"))
	if err != nil {
		t.Fatal(err)
	}
	script, _ := l.Script(ModeDestroyFormatMount, RenderOptions{})
	for _, line := range strings.Split(script, "\n") {
		if strings.Contains(line, "/tmp/secret.key") && !strings.Contains(line, `printf '%s' "$(cat /tmp/secret.key)" | disko_run cryptsetup`) &&
			strings.TrimSpace(line) != "disko_need_key /tmp/secret.key crypted" {
			t.Errorf("the password file is used outside a pipe into cryptsetup: %q", line)
		}
	}
	if !strings.Contains(script, "--key-file -") {
		t.Error("cryptsetup does not read the passphrase from stdin")
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in   string
		want Mode
	}{
		{"destroy,format,mount", ModeDestroyFormatMount}, {"disko", ModeDestroyFormatMount},
		{"format", ModeFormat}, {"create", ModeFormat}, {"mount", ModeMount},
		{"unmount", ModeUnmount}, {"destroy", ModeDestroy}, {"format,mount", ModeFormatMount},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if _, err := ParseMode("wipe"); err == nil {
		t.Error(`ParseMode("wipe") succeeded`)
	}
}

func TestRootMountpoint(t *testing.T) {
	l := mustParse(t, simpleDisk)
	lines := planLines(t, l, ModeMount)
	if contains(lines, "mount /dev/disk/by-partlabel/disk-main-root /mnt/ -t ext4 -o defaults") < 0 {
		t.Errorf("default root is not /mnt:\n%s", strings.Join(lines, "\n"))
	}
	p, err := l.Plan(ModeMount, RenderOptions{RootMountpoint: "/target/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Steps[len(p.Steps)-1].Argv, " "); got != "mount /dev/disk/by-partlabel/disk-main-ESP /target/boot -t vfat -o defaults" {
		t.Errorf("last mount: got %q", got)
	}
	if _, err := l.Plan(ModeMount, RenderOptions{RootMountpoint: "mnt"}); err == nil {
		t.Error("a relative root mountpoint was accepted")
	}
}

// The execution layouts parse and render in every mode, also where the
// execution tests themselves are skipped.
func TestExecLayoutsRender(t *testing.T) {
	files, err := filepath.Glob("testdata/exec/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no execution layouts: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("@KEYFILE@", "/tmp/k1", "@KEYFILE2@", "/tmp/k2", "@PASSWORDFILE@", "/tmp/pw").Replace(string(b))
		l, err := Parse([]byte(s))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, m := range []Mode{ModeDestroyFormatMount, ModeFormat, ModeMount, ModeUnmount, ModeDestroy} {
			if _, err := l.Script(m, RenderOptions{}); err != nil {
				t.Errorf("%s %s: %v", f, m, err)
			}
		}
	}
}
