package diskorun_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// loopDisk is a 64 MiB loop device, and a function that hashes it.
func loopDisk(t *testing.T) (string, func() [32]byte) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, []byte("not blank"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("losetup: %v (loop devices unavailable)", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, func() [32]byte {
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
}

func TestPrecheck(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := target.Dial(ctx, target.Options{
		Destination: fmt.Sprintf("root@127.0.0.1:%d", s.Port), IdentityFiles: []string{s.ClientKey},
		KnownHostsFiles: []string{s.KnownHosts}, SSHConfigFile: "none", ConnectTimeout: 5 * time.Second,
	}, t.TempDir())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	dev, hash := loopDisk(t)
	// A partition, and a link to it as /dev/md/NAME is one, stand for a
	// device a LUKS, md or LVM name of the layout already has on the host.
	if out, err := exec.Command("sgdisk", "-n", "1:2048:+8M", dev).CombinedOutput(); err != nil {
		t.Skipf("sgdisk: %v %s", err, out)
	}
	if out, err := exec.Command("partx", "-a", dev).CombinedOutput(); err != nil {
		t.Skipf("partx -a %s: %v %s", dev, err, out)
	}
	t.Cleanup(func() { exec.Command("partx", "-d", dev).Run() })
	part := dev + "p1"
	dir := t.TempDir()
	mdLink := filepath.Join(dir, "md-raid")
	if err := os.Symlink(part, mdLink); err != nil {
		t.Fatal(err)
	}
	names := []disko.DeviceName{
		{Kind: "LUKS container", Name: "crypted", Dev: "/dev/mapper/nixos-via-test-absent", JSONPath: "disk.main.content.partitions.luks.content"},
		{Kind: "mdadm array", Name: "raid", Dev: mdLink, JSONPath: "mdadm.raid"},
		{Kind: "volume group", Name: "nixos-via-test-absent-vg", JSONPath: "lvm_vg.pool"},
	}
	key := filepath.Join(dir, "secret.key")
	empty := filepath.Join(dir, "empty.key")
	os.WriteFile(key, []byte("k"), 0o600)
	os.WriteFile(empty, nil, 0o600)
	before := hash()

	luks := "disk.main.content.partitions.luks.content.settings.keyFile"
	tests := []struct {
		name string
		req  diskorun.Requirements
		want []string // problems named, in order; nil means no refusal
	}{
		{"all there", diskorun.Requirements{
			Tools: []string{"sh", "cat"},
			Files: []diskorun.File{{Path: key, What: luks}, {Path: dev, What: "a key on a device"}},
			Disks: []diskorun.Disk{{Name: "main", Device: dev, MinBytes: 32 << 20}},
		}, nil},
		{"missing tools are listed together", diskorun.Requirements{
			Tools: []string{"sh", "nixos-via-no-mkfs.zz", "nixos-via-no-sgdisk"},
		}, []string{"the host lacks nixos-via-no-mkfs.zz, nixos-via-no-sgdisk, which the disko script calls"}},
		{"missing and empty key files", diskorun.Requirements{
			Files: []diskorun.File{{Path: filepath.Join(dir, "absent.key"), What: luks}, {Path: empty, What: "disk.x.passwordFile"}},
		}, []string{luks + ": the file " + filepath.Join(dir, "absent.key") + " is missing on the host (give it with --disk-encryption-keys",
			"disk.x.passwordFile: the file " + empty + " is empty on the host"}},
		{"disk too small", diskorun.Requirements{
			Disks: []diskorun.Disk{{Name: "main", Device: dev, MinBytes: 100 << 20}},
		}, []string{"disk.main: " + dev + " has 64.0 MiB but the layout's fixed sizes need 100.0 MiB"}},
		{"names free, or in use on the disks the layout erases", diskorun.Requirements{
			Names: names, Erased: []string{dev},
		}, nil},
		{"a name in use on a disk the layout does not erase", diskorun.Requirements{
			Names: names, Erased: []string{"/dev/nixos-via-no-disk"},
		}, []string{`mdadm.raid: the mdadm array name "raid" is already in use on the host, on ` + dev + ", which the layout does not erase"}},
		{"disk not there", diskorun.Requirements{
			Disks: []diskorun.Disk{{Name: "data", Device: "/dev/nixos-via-no-disk", MinBytes: 1}},
		}, []string{"disk.data: cannot read the size of /dev/nixos-via-no-disk on the host"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := diskorun.Precheck(ctx, conn, tc.req)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Precheck = %v, want no refusal", err)
				}
				return
			}
			var r *phase.Refusal
			if !errors.As(err, &r) || !r.Refused() {
				t.Fatalf("Precheck = %v, want a *Refusal", err)
			}
			if got, want := len(r.Problems), len(tc.want); got != want {
				t.Fatalf("problems = %q, want %d of them", r.Problems, want)
			}
			for i, want := range tc.want {
				if got := r.Problems[i]; !strings.HasPrefix(got, want) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got, want)
				}
			}
			if !strings.Contains(err.Error(), "nothing was touched") {
				t.Errorf("error = %q, want it to say nothing was touched", err)
			}
		})
	}
	if hash() != before {
		t.Errorf("the disk changed during the checks")
	}
}
