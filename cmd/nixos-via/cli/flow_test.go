package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/sshtest"
)

// layoutFlake writes a flake whose nixosConfigurations.t has the disko
// layout given as JSON, shaped as disko's NixOS module leaves it: every
// node carries internal options, functions among them, and "_parent", a
// cycle back to the node above. It returns the flake's reference.
func layoutFlake(t *testing.T, layoutJSON string) string {
	t.Helper()
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("no nix (apt-get install nix-bin)")
	}
	dir := t.TempDir()
	flake := `{ outputs = { self }: let
    shape = parent: v:
      if builtins.isAttrs v then
        let node = builtins.mapAttrs (n: shape node) v // {
          _parent = parent; _pkgs = pkgs: [ ]; _meta = dev: { }; _create = "";
          _module.args = { name = "node"; pkgs.lib.id = x: x; };
        }; in node
      else if builtins.isList v then map (shape parent) v
      else v;
  in { nixosConfigurations.t.config.disko.devices = shape null (builtins.fromJSON (builtins.readFile ./layout.json)); }; }`
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "layout.json"), []byte(layoutJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	return "path:" + dir
}

const missingDiskLayout = `{"disk": {"main": {"type": "disk", "device": "/dev/nixos-via-no-such-disk",
  "content": {"type": "gpt", "partitions": {"root": {"size": "100%", "content": {"type": "filesystem", "format": "ext4", "mountpoint": "/"}}}}}}}`

func TestDiskoPhaseRefusesAMissingDiskBeforeTouchingAnything(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	ref := layoutFlake(t, missingDiskLayout)
	code, _, stderr := runCLI(t, nil, "--flake", ref+"#t", "--phases", "disko", fmt.Sprintf("root@127.0.0.1:%d", s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if code != ExitRefused {
		t.Fatalf("exit %d, want %d (pre-flight refused); stderr:\n%s", code, ExitRefused, stderr)
	}
	if !strings.Contains(stderr, "/dev/nixos-via-no-such-disk") || !strings.Contains(stderr, "does not have") {
		t.Errorf("stderr does not name the missing disk:\n%s", stderr)
	}
	if strings.Contains(stderr, "partitioning") {
		t.Errorf("the disko script started:\n%s", stderr)
	}
}

func TestInvalidLayoutFailsBeforeConnecting(t *testing.T) {
	ref := layoutFlake(t, `{"disk": {"main": {"type": "disk", "device": "/dev/vda", "content": {"type": "filesystem", "format": "ext5", "mountpoint": "/"}}}}`)
	// Nothing listens on this port: a connection attempt would fail with exit 3.
	code, _, stderr := runCLI(t, nil, "--flake", ref+"#t", "--phases", "disko", "root@127.0.0.1:1")
	if code != ExitFailure || !strings.Contains(stderr, `disk.main.content.format`) || strings.Contains(stderr, "connecting") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 naming the JSON path, before any connection", code, stderr)
	}
}

// loopDisk is a loop device over a fresh sparse image of size bytes, and a
// function that hashes the image. It skips t where loop devices or /mnt
// cannot be used.
func loopDisk(t *testing.T, size int64) (string, func() [32]byte) {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Skip("no sgdisk (apt-get install gdisk)")
	}
	if out, _ := exec.Command("findmnt", "-n", "/mnt").Output(); len(out) > 0 {
		t.Skipf("/mnt is in use on this machine (%s): the install flow mounts there", strings.TrimSpace(string(out)))
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, []byte("an old system's bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-P", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("losetup: %v (loop devices unavailable)", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		os.Remove("/run/nixos-via/disko-applied") // the marker the disko phase leaves
		exec.Command("umount", "-R", "/mnt").Run()
		exec.Command("losetup", "-d", loop).Run()
	})
	return loop, func() [32]byte {
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
}

func TestDiskoPhaseOnALoopDevice(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	loop, _ := loopDisk(t, 300<<20)
	layout := fmt.Sprintf(`{"disk": {"main": {"type": "disk", "device": %q, "content": {"type": "gpt", "partitions": {
  "srv": {"size": "64M", "content": {"type": "filesystem", "format": "ext4", "mountpoint": "/srv"}},
  "root": {"size": "100%%", "content": {"type": "filesystem", "format": "ext4", "mountpoint": "/"}}}}}}}`, loop)
	ref := layoutFlake(t, layout)
	code, _, stderr := runCLI(t, nil, "--flake", ref+"#t", "--phases", "disko", fmt.Sprintf("root@127.0.0.1:%d", s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "ERASE") || !strings.Contains(stderr, loop) {
		t.Errorf("the wipe list does not name %s:\n%s", loop, stderr)
	}
	// (ext4 only: this machine's kernel may lack vfat.)
	for mp, fstype := range map[string]string{"/mnt": "ext4", "/mnt/srv": "ext4"} {
		got, err := exec.Command("findmnt", "-n", "-o", "FSTYPE", mp).Output()
		if err != nil || strings.TrimSpace(string(got)) != fstype {
			t.Errorf("findmnt %s = %q (%v), want %s", mp, got, err, fstype)
		}
	}
}

// TestDiskoPhaseRefusesWhatCannotBeFinished: a layout whose script would
// call a tool the host lacks, read a key file that is not there, or not
// fit on the disk is refused with exit 5 before anything is touched (the
// disk's bytes are the same), naming the problem; one that asks for a
// passphrase without a terminal is refused before connecting.
func TestDiskoPhaseRefusesWhatCannotBeFinished(t *testing.T) {
	if _, err := exec.LookPath("mkfs.f2fs"); err == nil {
		t.Skip("mkfs.f2fs is installed here: the missing-tool case needs a tool this host lacks")
	}
	s := sshtest.Start(t, sshtest.Options{})
	loop, hash := loopDisk(t, 300<<20)
	disk := func(partitions string) string {
		return fmt.Sprintf(`{"disk": {"main": {"type": "disk", "device": %q, "content": {"type": "gpt", "partitions": {%s}}}}}`, loop, partitions)
	}
	root := `"root": {"size": "100%", "content": {"type": "filesystem", "format": "ext4", "mountpoint": "/"}}`
	luks := func(settings string) string {
		return `"luks": {"size": "100%", "content": {"type": "luks", "name": "crypted", ` + settings +
			`, "content": {"type": "filesystem", "format": "ext4", "mountpoint": "/"}}}`
	}
	tests := []struct {
		name, layout string
		want         []string
	}{
		{"a tool the host lacks", disk(`"data": {"size": "64M", "content": {"type": "filesystem", "format": "f2fs", "mountpoint": "/data"}}, ` + root),
			[]string{"lacks", "mkfs.f2fs"}},
		{"a key file that is not there", disk(luks(`"settings": {"keyFile": "/tmp/nixos-via-test-no-such.key"}`)),
			[]string{"/tmp/nixos-via-test-no-such.key is missing on the host", "--disk-encryption-keys /tmp/nixos-via-test-no-such.key"}},
		{"a disk too small", disk(`"big": {"size": "1G", "content": {"type": "filesystem", "format": "ext4", "mountpoint": "/big"}}, ` + root),
			[]string{"disk.main", "300.0 MiB", "fixed sizes need"}},
		{"a passphrase and no terminal", disk(luks(`"askPassword": true`)),
			[]string{"crypted", "no terminal", "--disk-encryption-keys"}},
	}
	before := hash()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := layoutFlake(t, tc.layout)
			code, _, stderr := runCLI(t, nil, "--flake", ref+"#t", "--phases", "disko", "--yes", fmt.Sprintf("root@127.0.0.1:%d", s.Port),
				"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
			if code != ExitRefused {
				t.Fatalf("exit %d, want %d (refused); stderr:\n%s", code, ExitRefused, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "partitioning") {
				t.Errorf("the disko script started:\n%s", stderr)
			}
			if hash() != before {
				t.Fatalf("the disk changed")
			}
		})
	}
}

func TestDebugTracesRemoteCommands(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	ref := layoutFlake(t, missingDiskLayout)
	code, _, stderr := runCLI(t, nil, "--debug", "--flake", ref+"#t", "--phases", "disko", fmt.Sprintf("root@127.0.0.1:%d", s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if code != ExitRefused {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitRefused, stderr)
	}
	if !strings.Contains(stderr, "+ ssh: sh -s") || !strings.Contains(stderr, "+ ssh: d=/dev/nixos-via-no-such-disk") {
		t.Errorf("--debug did not trace the remote commands:\n%s", stderr)
	}
	code, _, stderr = runCLI(t, nil, "--flake", ref+"#t", "--phases", "disko", fmt.Sprintf("root@127.0.0.1:%d", s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if strings.Contains(stderr, "+ ssh:") {
		t.Errorf("remote commands traced without --debug:\n%s", stderr)
	}
}

func TestKexecURLIsFetchedByTheHost(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	tarball := fakeInstaller(t, "#!/bin/sh\necho fake installer: no kexec here\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(tarball) }))
	defer srv.Close()
	code, _, stderr := runCLI(t, nil, "--phases", "kexec", "--kexec", srv.URL+"/installer.tar.gz", fmt.Sprintf("root@127.0.0.1:%d", s.Port),
		"-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if strings.Contains(stderr, "pre-flight container") {
		// This machine is a container: kexec is refused before anything
		// is fetched (vmtests/e2e covers the download in a VM).
		if code != ExitRefused || strings.Contains(stderr, "downloads") {
			t.Errorf("exit %d, want %d before any download:\n%s", code, ExitRefused, stderr)
		}
		return
	}
	if code != ExitKexec {
		t.Fatalf("exit %d, want %d (the fake run prints no marker); stderr:\n%s", code, ExitKexec, stderr)
	}
	for _, want := range []string{"the host downloads the installer from " + srv.URL, "fake installer: no kexec here"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "uploading the installer") {
		t.Errorf("the installer was uploaded although the host fetched it:\n%s", stderr)
	}
}

// fakeInstaller is a gzip tarball in the kexec layout whose run is script.
func fakeInstaller(t *testing.T, script string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		name string
		mode int64
		data string
	}{{"kexec/run", 0o755, script}, {"kexec/bzImage", 0o644, "kernel"}, {"kexec/initrd", 0o644, "initrd"}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), Typeflag: tar.TypeReg})
		tw.Write([]byte(e.data))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// hwFlake is a flake in a git work tree whose disko layout exists only
// once ./hardware-configuration.nix (generated on the host) is there and
// git knows about it: it names the disk the hardware config reports.
func hwFlake(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"nix", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	dir := t.TempDir()
	flake := `{ outputs = { self }: let
    hw = if builtins.pathExists ./hardware-configuration.nix
      then import ./hardware-configuration.nix { lib = { mkDefault = x: x; }; }
      else throw "hardware-configuration.nix is not there (yet)";
  in { nixosConfigurations.t.config.disko.devices = { disk.main = { type = "disk"; device = hw.testDisk;
    content = { type = "gpt"; partitions.root = { size = "100%"; content = { type = "filesystem"; format = "ext4"; mountpoint = "/"; }; }; }; }; }; }; }`
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "flake.nix"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	return dir
}

// TestHardwareConfigComesBeforeEvaluation: with --generate-hardware-config
// the layout is evaluated only after the host's tool wrote the file it
// imports (a git flake sees it through the intent-to-add), and the disks
// are still checked before disko runs.
func TestHardwareConfigComesBeforeEvaluation(t *testing.T) {
	s := sshtest.StartWithTools(t, map[string]string{
		"nixos-generate-config": `[ "$*" = "--show-hardware-config --no-filesystems" ] || exit 2
echo '{ lib, ... }: { testDisk = lib.mkDefault "/dev/nixos-via-no-such-disk"; }'
`})
	dir := hwFlake(t)
	hw := filepath.Join(dir, "hardware-configuration.nix")
	code, _, stderr := runCLI(t, nil, "--flake", dir+"#t", "--phases", "disko", "--generate-hardware-config", "nixos-generate-config", hw,
		fmt.Sprintf("root@127.0.0.1:%d", s.Port), "-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	// The layout names the disk the generated file gives: the host lacks
	// it, so the run stops before disko, after evaluating.
	if code != ExitRefused || !strings.Contains(stderr, "/dev/nixos-via-no-such-disk, which the host does not have") {
		t.Fatalf("got exit %d, want %d naming the generated file's disk; stderr:\n%s", code, ExitRefused, stderr)
	}
	gen, eval := strings.Index(stderr, "[hardware-config] running nixos-generate-config"), strings.Index(stderr, "evaluating the disk layout")
	if gen < 0 || eval < gen || strings.Index(stderr, "connecting") > gen {
		t.Errorf("want connect, then generate, then evaluate; stderr:\n%s", stderr)
	}
	if got, err := os.ReadFile(hw); err != nil || !strings.Contains(string(got), "testDisk") {
		t.Errorf("got %s = %q (%v), want the tool's output", hw, got, err)
	}
	if out, _ := exec.Command("git", "-C", dir, "ls-files").Output(); !strings.Contains(string(out), "hardware-configuration.nix") {
		t.Errorf("git ls-files = %q, want hardware-configuration.nix (intent to add)", out)
	}
	if strings.Contains(stderr, "partitioning") {
		t.Errorf("the disko script started:\n%s", stderr)
	}
}

func TestHardwareConfigMissingToolStopsBeforeEvaluation(t *testing.T) {
	s := sshtest.StartWithTools(t, nil)
	dir := hwFlake(t)
	hw := filepath.Join(dir, "facter.json")
	os.WriteFile(hw, []byte("{}\n"), 0o644)
	code, _, stderr := runCLI(t, nil, "--flake", dir+"#t", "--phases", "disko", "--generate-hardware-config", "nixos-facter", hw,
		fmt.Sprintf("root@127.0.0.1:%d", s.Port), "-i", s.ClientKey, "--ssh-option", "UserKnownHostsFile="+s.KnownHosts)
	if code != ExitKexec || !strings.Contains(stderr, "nixos-facter on 127.0.0.1: not found: the installer image lacks nixos-facter") {
		t.Fatalf("got exit %d, want %d naming the missing tool; stderr:\n%s", code, ExitKexec, stderr)
	}
	if strings.Contains(stderr, "evaluating") {
		t.Errorf("the layout was evaluated although the hardware config failed:\n%s", stderr)
	}
	if want := "The host now: "; !strings.Contains(stderr, want) {
		t.Errorf("the failure does not say where the host is (%q):\n%s", want, stderr)
	}
	if got, _ := os.ReadFile(hw); string(got) != "{}\n" {
		t.Errorf("got %s = %q, want the earlier content", hw, got)
	}
}
