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
		"if=pflash,format=raw,readonly=on,file=" + OVMFCode, "drive=d1,serial=data1", "-machine q35"} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU args lack %q:\n%s", want, args)
		}
	}
	if strings.Contains(args, "bootindex") {
		t.Errorf("a direct kernel boot gives disks a boot index (QEMU refuses index 0 twice): %s", args)
	}
	if strings.Contains(args, "-no-reboot") {
		t.Errorf("-no-reboot without Boot.NoReboot: %s", args)
	}
	if a := strings.Join(s.Args(Boot{Kernel: "/k", SSHPort: 1, NoReboot: true}), " "); !strings.Contains(a, "-no-reboot") {
		t.Errorf("Boot.NoReboot lacks -no-reboot: %s", a)
	}
	disk := s.Args(Boot{SSHPort: 1, Forwards: []int{40022, 2222}})
	if a := strings.Join(disk, " "); !strings.Contains(a, "hostfwd=tcp:127.0.0.1:1-:22,hostfwd=tcp:127.0.0.1:40022-:40022,hostfwd=tcp:127.0.0.1:2222-:2222") {
		t.Errorf("Boot.Forwards not forwarded from the same ports: %s", a)
	}
	if slices.Contains(disk, "-kernel") {
		t.Errorf("a boot from disk passes -kernel: %v", disk)
	}
	for _, want := range []string{"drive=d0,bootindex=0", "drive=d1,bootindex=1,serial=data1"} {
		if !strings.Contains(strings.Join(disk, " "), want) {
			t.Errorf("a boot from disk lacks %q: %v", want, disk)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("Close left %s behind (stat: %v)", s.Dir, err)
	}
}
