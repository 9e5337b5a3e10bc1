package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runDiskoCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := Env{Args: append([]string{"disko"}, args...), Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr,
		Getenv: func(string) string { return "" }}
	code := finish(env, runDisko(context.Background(), env, args))
	return code, stdout.String(), stderr.String()
}

const cliLayout = `{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
  "boot":{"size":"1M","type":"EF02"},
  "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDiskoPrintScript(t *testing.T) {
	f := writeFile(t, "layout.json", cliLayout)
	code, out, errOut := runDiskoCLI(t, "", "--layout", f, "--print")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	for _, want := range []string{"#!/bin/sh", "mode destroy,format,mount, root /mnt", "disko_wipe_disk /dev/vda", "--change-name=2:disk-main-root", "mkfs.ext4"} {
		if !strings.Contains(out, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	code, out, _ = runDiskoCLI(t, "", "--layout", f, "--print", "--mode", "mount", "--root-mountpoint", "/target")
	if code != ExitOK || strings.Contains(out, "disko_wipe_disk /dev/vda") || !strings.Contains(out, "disko_mount /target/ ") {
		t.Errorf("mount mode under /target: exit %d, script:\n%s", code, out)
	}
}

func TestDiskoInvalidLayout(t *testing.T) {
	f := writeFile(t, "bad.json", strings.Replace(cliLayout, `"ext4"`, `"ext5"`, 1))
	for _, flag := range []string{"--print", "--print-config", "--validate", ""} {
		args := []string{"--layout", f}
		if flag != "" {
			args = append(args, flag)
		}
		code, out, errOut := runDiskoCLI(t, "", args...)
		if code != ExitFailure {
			t.Errorf("%v: exit %d, want %d", args, code, ExitFailure)
		}
		if out != "" {
			t.Errorf("%v: printed to stdout although the layout is invalid:\n%s", args, out)
		}
		if !strings.Contains(errOut, `disk.main.content.partitions.root.content.format: unknown filesystem "ext5"`) {
			t.Errorf("%v: stderr does not name the JSON path:\n%s", args, errOut)
		}
	}
}

func TestDiskoUsageErrors(t *testing.T) {
	f := writeFile(t, "layout.json", cliLayout)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no layout", []string{"--print"}, "exactly one of --layout"},
		{"both sources", []string{"--layout", f, "--flake", ".#h"}, "exactly one of --layout"},
		{"two outputs", []string{"--layout", f, "--print", "--validate"}, "exclude each other"},
		{"bad mode", []string{"--layout", f, "--mode", "wipe"}, `unknown disko mode "wipe"`},
		{"relative root", []string{"--layout", f, "--root-mountpoint", "mnt"}, "not an absolute path"},
		{"unknown flag", []string{"--layout", f, "--yes"}, "unknown flag"},
		{"bad extension", []string{"--layout", "layout.yaml"}, "want a .json or .nix file"},
		{"flake without host", []string{"--flake", "."}, "want REF#HOST"},
		{"stray argument", []string{"--layout", f, "host"}, `unexpected argument "host"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runDiskoCLI(t, "", tt.args...)
			if code != ExitUsage || !strings.Contains(errOut, tt.want) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 mentioning %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestDiskoPrintConfigAndValidate(t *testing.T) {
	code, out, errOut := runDiskoCLI(t, cliLayout, "--layout", "-", "--print-config")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var cfg struct {
		FileSystems map[string]struct{ Device, FsType string }
		Boot        struct {
			Loader struct{ Grub struct{ Devices []string } }
		}
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("--print-config is not JSON: %v\n%s", err, out)
	}
	if got := cfg.FileSystems["/"]; got.Device != "/dev/disk/by-partlabel/disk-main-root" || got.FsType != "ext4" {
		t.Errorf("fileSystems./ = %+v", got)
	}
	if got := cfg.Boot.Loader.Grub.Devices; len(got) != 1 || got[0] != "/dev/vda" {
		t.Errorf("boot.loader.grub.devices = %v, want [/dev/vda]", got)
	}
	code, out, _ = runDiskoCLI(t, cliLayout, "--layout", "-", "--validate")
	if code != ExitOK || !strings.Contains(out, "valid (1 disk)") {
		t.Errorf("--validate: exit %d, %q", code, out)
	}
}

func TestDiskoWipeSummary(t *testing.T) {
	two := `{"disk":{"a":{"device":"/dev/vda"},"b":{"device":"/dev/disk/by-id/nvme-X","destroy":false},"c":{"device":"/dev/vdc"}}}`
	code, out, _ := runDiskoCLI(t, two, "--layout", "-")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "WIPES these disks:\n  /dev/vda  (disk.a)\n  /dev/vdc  (disk.c)\n") || strings.Contains(out, "nvme-X") {
		t.Errorf("wipe summary:\n%s", out)
	}
	if !strings.Contains(out, "Nothing was run") || !strings.Contains(out, "install flow") {
		t.Errorf("summary does not say that running belongs to the install flow:\n%s", out)
	}
	_, out, _ = runDiskoCLI(t, two, "--layout", "-", "--mode", "mount")
	if !strings.Contains(out, "Mode mount wipes no disk.") {
		t.Errorf("mount mode summary:\n%s", out)
	}
}

func TestDiskoNixLayout(t *testing.T) {
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		t.Skip("nix-instantiate is not installed")
	}
	f := writeFile(t, "layout.nix", `{ disko.devices.disk.main = {
  device = "/dev/vda"; type = "disk";
  content = { type = "gpt"; partitions.root = { size = "100%"; content = { type = "filesystem"; format = "xfs"; mountpoint = "/"; }; }; };
}; }`)
	code, out, errOut := runDiskoCLI(t, "", "--layout", f, "--print-config")
	if code != ExitOK || !strings.Contains(out, `"fsType": "xfs"`) {
		t.Errorf("exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	bad := writeFile(t, "bad.nix", `{ disk.main = { device = "/dev/vda"; content = { type = "filesystem"; format = "ext5"; }; }; }`)
	code, _, errOut = runDiskoCLI(t, "", "--layout", bad, "--validate")
	if code != ExitFailure || !strings.Contains(errOut, `disk.main.content.format: unknown filesystem "ext5"`) {
		t.Errorf("invalid .nix: exit %d, stderr %s", code, errOut)
	}
	syntax := writeFile(t, "syntax.nix", `{ disk = `)
	code, _, errOut = runDiskoCLI(t, "", "--layout", syntax, "--validate")
	if code != ExitFailure || !strings.Contains(errOut, "nix-instantiate") {
		t.Errorf("unparsable .nix: exit %d, stderr %s", code, errOut)
	}
}

func TestDiskoFlake(t *testing.T) {
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix is not installed")
	}
	dir := t.TempDir()
	// A flake with no inputs whose host exposes disko.devices the way
	// disko's module does, including a function-valued internal option.
	flake := `{ outputs = { self }: { nixosConfigurations."my-host".config.disko.devices = {
  _meta = x: x;
  disk.main = { device = "/dev/vdb"; type = "disk"; _index = 1;
    content = { type = "gpt"; partitions.root = { size = "100%"; content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; }; }; }; };
}; }; }`
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runDiskoCLI(t, "", "--flake", "path:"+dir+"#my-host")
	if code != ExitOK || !strings.Contains(out, "/dev/vdb  (disk.main)") {
		t.Errorf("exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	code, _, errOut = runDiskoCLI(t, "", "--flake", "path:"+dir+"#other-host", "--validate")
	if code != ExitFailure || !strings.Contains(errOut, "nix eval") || !strings.Contains(errOut, "other-host") {
		t.Errorf("missing host: exit %d, stderr %s", code, errOut)
	}
}

// The "done when": the printed script, run as root on a loop
// device, yields the layout.
func TestDiskoPrintedScriptRunsOnLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices")
	}
	for _, tool := range []string{"losetup", "sgdisk", "partprobe", "mkfs.ext4", "blkid", "wipefs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command("losetup", "-P", "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(b))
	root := filepath.Join(dir, "mnt")
	t.Cleanup(func() {
		_ = exec.Command("umount", "-R", root).Run()
		_ = exec.Command("losetup", "-d", loop).Run()
	})
	layout := writeFile(t, "layout.json", strings.Replace(cliLayout, "/dev/vda", loop, 1))
	run := func(mode string) {
		t.Helper()
		code, script, errOut := runDiskoCLI(t, "", "--layout", layout, "--print", "--mode", mode, "--root-mountpoint", root, "--device-timeout", "20s")
		if code != ExitOK {
			t.Fatalf("%s: exit %d: %s", mode, code, errOut)
		}
		cmd := exec.Command("sh", "-s", "--", "--yes-wipe-all-disks")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s script: %v\n%s", mode, err, out)
		}
	}
	run("destroy,format,mount")
	out, err := exec.Command("findmnt", "-n", "-o", "FSTYPE", root).Output()
	if err != nil || strings.TrimSpace(string(out)) != "ext4" {
		t.Errorf("findmnt %s: %v %q, want ext4", root, err, out)
	}
	run("unmount")
	if err := exec.Command("findmnt", root).Run(); err == nil {
		t.Errorf("%s still mounted after unmount", root)
	}
}
