package disko

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func parseCase(t *testing.T, name string) *Layout {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(casesDir, name+".json"))
	if err != nil {
		t.Skipf("disko cases not available: %v", err)
	}
	l, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return l
}

const askPasswordLayout = `{"disk":{"main":{"device":"/dev/vda","content":{"type":"gpt","partitions":{
	"luks":{"size":"100%","content":{"type":"luks","name":"cryptroot","content":{"type":"filesystem","format":"xfs","mountpoint":"/"}}}}}}}}`

func TestNeeds(t *testing.T) {
	tests := []struct {
		layout      string // case name, or inline JSON
		mode        Mode
		with        []string // tools that must be listed
		without     []string // tools that must not be listed
		keyFiles    []KeyFile
		passphrases []string
		diskMin     map[string]int64
	}{
		{"01-simple-efi", ModeFormat,
			[]string{"sgdisk", "mkfs.vfat", "mkfs.ext4", "blkid"},
			[]string{"cryptsetup", "parted", "mdadm", "pvcreate", "mkswap", "wipefs", "umount", "stty"},
			nil, nil, map[string]int64{"main": (500 + 2) << 20}},
		{"01-simple-efi", ModeDestroyFormatMount,
			[]string{"sgdisk", "mkfs.vfat", "mkfs.ext4", "wipefs", "dd", "mount"},
			[]string{"cryptsetup", "pvs", "vgremove", "mdadm", "zpool", "dmsetup"},
			nil, nil, map[string]int64{"main": (500 + 2) << 20}},
		{"01-simple-efi", ModeMount,
			[]string{"mount", "mkdir"},
			[]string{"sgdisk", "mkfs.vfat", "mkfs.ext4", "wipefs"},
			nil, nil, map[string]int64{"main": (500 + 2) << 20}},
		{"04-legacy-table-gpt", ModeFormat,
			[]string{"parted", "mkfs.vfat", "mkfs.ext4"},
			[]string{"sgdisk"},
			nil, nil, map[string]int64{"main": 500e6 + 1<<20}},
		{"05-luks-keyfile-btrfs", ModeFormat,
			[]string{"cryptsetup", "mkfs.btrfs", "btrfs", "mktemp"},
			[]string{"stty", "mkfs.ext4"},
			[]KeyFile{
				{"/tmp/secret.key", "disk.main.content.partitions.luks.content.settings.keyFile"},
				{"/tmp/additionalSecret.key", "disk.main.content.partitions.luks.content.additionalKeyFiles[0]"},
			}, nil, map[string]int64{"main": (512 + 2) << 20}},
		{"05-luks-keyfile-btrfs", ModeMount,
			[]string{"cryptsetup", "mount"},
			[]string{"mkfs.btrfs", "btrfs"},
			[]KeyFile{{"/tmp/secret.key", "disk.main.content.partitions.luks.content.settings.keyFile"}},
			nil, map[string]int64{"main": (512 + 2) << 20}},
		{"06-luks-passwordfile", ModeFormatMount,
			[]string{"cryptsetup", "mkfs.ext4", "mkfs.vfat"},
			[]string{"stty"},
			[]KeyFile{{"/tmp/secret.key", "disk.main.content.partitions.luks.content.passwordFile"}},
			nil, map[string]int64{"main": (500 + 2) << 20}},
		{"06-luks-passwordfile", ModeUnmount,
			[]string{"cryptsetup", "umount"},
			[]string{"mkfs.ext4", "sgdisk"},
			nil, nil, map[string]int64{"main": (500 + 2) << 20}},
		{"08-luks-lvm", ModeFormat,
			[]string{"cryptsetup", "pvcreate", "vgcreate", "lvcreate", "mkfs.ext4"},
			[]string{"mdadm", "zpool"},
			[]KeyFile{
				{"/tmp/secret.key", "disk.main.content.partitions.luks.content.settings.keyFile"},
				{"/tmp/additionalSecret.key", "disk.main.content.partitions.luks.content.additionalKeyFiles[0]"},
			}, nil, map[string]int64{"main": (500 + 2) << 20}},
		{"08-luks-lvm", ModeDestroy,
			[]string{"wipefs", "pvs", "vgremove", "cryptsetup", "dmsetup"},
			[]string{"lvcreate", "mdadm", "zpool"},
			nil, nil, map[string]int64{"main": (500 + 2) << 20}},
		{"11-mdadm-raid1", ModeFormat,
			[]string{"mdadm", "sgdisk", "mkfs.vfat", "mkfs.ext4"},
			[]string{"cryptsetup", "pvcreate"},
			nil, nil, map[string]int64{"one": (1 + 500 + 2) << 20, "two": (1 + 500 + 2) << 20}},
		{"22-complex", ModeFormat,
			[]string{"cryptsetup", "lvcreate", "mdadm", "zpool", "zfs", "mkfs.ext4", "mkfs.vfat"},
			[]string{"parted", "stty"},
			[]KeyFile{
				{"/tmp/secret.key", "disk.disk1.content.partitions.luks.content.settings.keyFile"},
				{"/tmp/additionalSecret.key", "disk.disk1.content.partitions.luks.content.additionalKeyFiles[0]"},
				{"/tmp/secret.key", "disk.disk2.content.partitions.luks.content.settings.keyFile"},
			}, nil, map[string]int64{"disk0": (128 + 1) << 20, "disk1": 2 << 20, "disk2": 2 << 20}},
		{askPasswordLayout, ModeFormatMount,
			[]string{"cryptsetup", "stty", "mkfs.xfs"},
			nil,
			nil, []string{"cryptroot"}, map[string]int64{"main": 2 << 20}},
		{askPasswordLayout, ModeUnmount,
			[]string{"cryptsetup"},
			[]string{"stty"},
			nil, nil, map[string]int64{"main": 2 << 20}},
	}
	for _, tt := range tests {
		name := tt.layout
		if strings.HasPrefix(name, "{") {
			name = "askPassword"
		}
		t.Run(name+"/"+tt.mode.String(), func(t *testing.T) {
			var l *Layout
			if strings.HasPrefix(tt.layout, "{") {
				var err error
				if l, err = Parse([]byte(tt.layout)); err != nil {
					t.Fatal(err)
				}
			} else {
				l = parseCase(t, tt.layout)
			}
			got, err := l.Needs(tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			has := map[string]bool{}
			for _, tool := range got.Tools {
				has[tool] = true
			}
			for _, tool := range tt.with {
				if !has[tool] {
					t.Errorf("Tools %v lack %s", got.Tools, tool)
				}
			}
			for _, tool := range tt.without {
				if has[tool] {
					t.Errorf("Tools %v list %s, which this script never calls", got.Tools, tool)
				}
			}
			if !reflect.DeepEqual(got.KeyFiles, tt.keyFiles) {
				t.Errorf("KeyFiles: got %v, want %v", got.KeyFiles, tt.keyFiles)
			}
			if !reflect.DeepEqual(got.Passphrases, tt.passphrases) {
				t.Errorf("Passphrases: got %v, want %v", got.Passphrases, tt.passphrases)
			}
			if !reflect.DeepEqual(got.DiskMinBytes, tt.diskMin) {
				t.Errorf("DiskMinBytes: got %v, want %v", got.DiskMinBytes, tt.diskMin)
			}
		})
	}
}

// Every tool Needs lists is a command of the rendered script, for every
// case and mode.
func TestNeedsToolsAppearInScript(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(casesDir, "*.json"))
	if len(files) == 0 {
		t.Skip("disko cases not available")
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".resolved.json") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for m := range modeNames {
			n, err := l.Needs(m)
			if err != nil {
				t.Fatalf("%s %s: %v", f, m, err)
			}
			script, err := l.Script(m, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, tool := range n.Tools {
				re := regexp.MustCompile(`(^|[\s;|&(!$"'])` + regexp.QuoteMeta(tool) + `($|[\s;|&)"'])`)
				if !re.MatchString(script) {
					t.Errorf("%s %s: %s is listed but not in the script", filepath.Base(f), m, tool)
				}
			}
		}
	}
}

// scanShell finds the commands of the constructs the script uses.
func TestScanShell(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"a x | b >/dev/null 2>&1 && c; d", []string{"a", "b", "c", "d"}},
		{`v=$(x "$(y 'z')") || w`, []string{"x", "y", "w"}},
		{`A=1 B="$(q)" cmd arg`, []string{"q", "cmd"}},
		{"if ! p; then r; elif s; then t; else u; fi", []string{"p", "r", "s", "t", "u"}},
		{"for i in $(l) a b; do m \"$i\"; done", []string{"l", "m"}},
		{"case \"$(k)\" in a|b) x ;; *) y ;; esac; z", []string{"k", "x", "y", "z"}},
		{"trap 'umount \"$M\"; rm -rf \"$M\"' EXIT", []string{"trap", "umount", "rm"}},
		{"echo y | disko_run mdadm --create", []string{"echo", "disko_run", "mdadm"}},
		{"n=$((n + 1)); ${x-y} \"$@\"", nil},
		{"(exec 3<>/dev/tty) 2>/dev/null; { f; }", []string{"exec", "f"}},
		{"# a comment\n'quoted' x", nil},
		{"command -v x >/dev/null", []string{"command"}},
		{"disko_has udevadm && udevadm settle", []string{"disko_has", "udevadm"}},
	}
	for _, tt := range tests {
		got := scanShell(tt.text).commands
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("scanShell(%q): got %q, want %q", tt.text, got, tt.want)
		}
	}
	if !scanShell("disko_has udevadm && udevadm settle").probed["udevadm"] {
		t.Errorf("disko_has udevadm: udevadm not marked as probed")
	}
}

// The script runs with a PATH holding nothing but the tools Needs lists
// (and the shell, called by its full path): nothing it calls is missing
// from the list.
func TestExecNeedsToolsSuffice(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash is not installed (busybox sh would run its own applets)")
	}
	tests := []struct {
		file  string
		tools []string
		fs    []string
		size  int
	}{
		{"names-gpt.json", []string{"mkfs.ext4"}, []string{"ext4"}, 160},
		{"names-table-gpt.json", []string{"parted", "mkfs.ext4"}, []string{"ext4"}, 160},
		{"legacy-msdos.json", []string{"parted", "mkfs.ext4", "mkswap", "swapon"}, []string{"ext4"}, 256},
		{"btrfs-subvolumes.json", []string{"mkfs.btrfs", "btrfs"}, []string{"btrfs"}, 384},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".json"), func(t *testing.T) {
			skipUnlessReady(t, requirement{tools: tt.tools, fs: tt.fs})
			r := newRig(t, tt.file, 1, tt.size, nil)
			for _, m := range []Mode{ModeDestroyFormatMount, ModeUnmount, ModeMount, ModeFormat, ModeUnmount} {
				n, err := r.l.Needs(m)
				if err != nil {
					t.Fatal(err)
				}
				bin := filepath.Join(r.dir, "bin-"+strings.ReplaceAll(m.String(), ",", "-"))
				if err := os.MkdirAll(bin, 0o755); err != nil {
					t.Fatal(err)
				}
				for _, tool := range n.Tools {
					p, err := exec.LookPath(tool)
					if err != nil {
						t.Fatalf("%s is listed but not installed: %v", tool, err)
					}
					if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil && !os.IsExist(err) {
						t.Fatal(err)
					}
				}
				script, err := r.l.Script(m, RenderOptions{RootMountpoint: r.root})
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(r.dir, "needs-"+strings.ReplaceAll(m.String(), ",", "-")+".sh")
				if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				cmd := exec.CommandContext(ctx, dash, path, "--yes-wipe-all-disks")
				cmd.Env = []string{"PATH=" + bin, "DISKO_DEVICE_TIMEOUT=30", "HOME=/root"}
				out, err := cmd.CombinedOutput()
				cancel()
				// dash reports a missing command as "SCRIPT: LINE: NAME: not
				// found" (parted's own "sh: 1: udevadm: not found" is not
				// the script's).
				missing := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(path) + `: \d+: .*not found`)
				if err != nil || missing.Match(out) {
					t.Fatalf("mode %s with PATH holding only %v: %v\n%s", m, n.Tools, err, out)
				}
			}
		})
	}
}
