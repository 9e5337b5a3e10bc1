package localvm

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestSession(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat(OVMFVars); err != nil {
		t.Skip(err)
	}
	specs := []DiskSpec{{Attr: "main", Device: "/dev/vda", Size: 1 << 30}, {Attr: "s", Serial: "data1", Size: 1 << 30}}
	s, err := NewSession(specs, true, "tcg")
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	for _, p := range s.Disks {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("disk not made: %v", err)
		}
	}
	args := strings.Join(s.Args(Boot{Kernel: "/k", Initrd: "/i", Cmdline: "c", SSHPort: 2222}), " ")
	for _, want := range []string{"-accel tcg", "hostfwd=tcp:127.0.0.1:2222-:22", "restrict=on", "-kernel /k -initrd /i -append c",
		"if=pflash,format=raw,readonly=on,file=" + OVMFCode, "bootindex=0", "drive=d1,bootindex=1,serial=data1", "-machine q35"} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU args lack %q:\n%s", want, args)
		}
	}
	if disk := s.Args(Boot{SSHPort: 1}); slices.Contains(disk, "-kernel") {
		t.Errorf("a boot from disk passes -kernel: %v", disk)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("Close left %s behind (stat: %v)", s.Dir, err)
	}
}
