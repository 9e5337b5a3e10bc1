package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStartInRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing to boot", Config{}, "neither a kernel nor UEFI"},
		{"initrd without kernel", Config{UEFI: true, Initrd: "x"}, "without a kernel"},
		{"disk without size", Config{Kernel: "k", Disks: []Disk{{}}}, "no size and no path"},
		{"bad disk format", Config{Kernel: "k", Disks: []Disk{{Size: 1 << 20, Format: "vmdk"}}}, `unknown format "vmdk"`},
		{"guest forward off loopback", Config{Kernel: "k", GuestForwards: []GuestForward{{Guest: "10.0.2.100:80", Host: "192.168.1.1:80"}}}, "want 127.0.0.1:PORT"},
		{"guest forward to a name", Config{Kernel: "k", GuestForwards: []GuestForward{{Guest: "10.0.2.100:80", Host: "localhost:80"}}}, "want 127.0.0.1:PORT"},
		{"guest forward without port", Config{Kernel: "k", GuestForwards: []GuestForward{{Guest: "10.0.2.100", Host: "127.0.0.1:80"}}}, "want IP:PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := StartIn(t.TempDir(), tt.cfg)
			if err == nil {
				v.Stop(context.Background())
				t.Fatalf("StartIn(%+v) = nil error, want %q", tt.cfg, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("StartIn error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestGuestForwards(t *testing.T) {
	got, err := guestForwards([]GuestForward{{Guest: "10.0.2.100:80", Host: "127.0.0.1:4321"}, {Guest: "10.0.2.101:443", Host: "127.0.0.1:4322"}})
	want := ",guestfwd=tcp:10.0.2.100:80-cmd:nc -N 127.0.0.1 4321,guestfwd=tcp:10.0.2.101:443-cmd:nc -N 127.0.0.1 4322"
	if err != nil || got != want {
		t.Errorf("guestForwards = %q, %v; want %q", got, err, want)
	}
}

func TestPrepareDisk(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	raw, format, err := prepareDisk(dir, "t", 0, Disk{Size: 1 << 30, Format: "raw"})
	if err != nil || format != "raw" {
		t.Fatalf("raw disk: %v, %v", format, err)
	}
	st, err := os.Stat(raw)
	if err != nil || st.Size() != 1<<30 {
		t.Fatalf("raw disk size = %v, %v; want 1 GiB", st, err)
	}
	qcow, format, err := prepareDisk(dir, "t", 1, Disk{Size: 1 << 30})
	if err != nil || format != "qcow2" {
		t.Fatalf("qcow2 disk: %v, %v", format, err)
	}
	over, format, err := prepareDisk(dir, "t", 2, Disk{Path: raw, Format: "raw", Overlay: true})
	if err != nil || format != "qcow2" {
		t.Fatalf("overlay: %v, %v", format, err)
	}
	out, err := exec.Command("qemu-img", "info", over).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backing file: "+raw) {
		t.Errorf("qemu-img info overlay = %s, %v; want backing file %s", out, err, raw)
	}
	if out, err := exec.Command("qemu-img", "info", qcow).CombinedOutput(); err != nil || !strings.Contains(string(out), "virtual size: 1 GiB") {
		t.Errorf("qemu-img info qcow2 = %s, %v", out, err)
	}
	if p, _, err := prepareDisk(dir, "t", 3, Disk{Path: raw, Format: "raw"}); err != nil || p != raw {
		t.Errorf("existing disk without overlay = %q, %v; want %q itself", p, err, raw)
	}
}

// ExpectString moves a cursor: the same text must appear again to match
// again, and a deadline reports the console tail.
func TestExpectStringCursor(t *testing.T) {
	dir := t.TempDir()
	v := &VM{Name: "fake", ConsoleLog: filepath.Join(dir, "console.log"), done: make(chan struct{}), Started: time.Now()}
	os.WriteFile(v.ConsoleLog, []byte("boot\nsshd started\n"), 0o644)
	ctx := context.Background()
	if err := v.ExpectString(ctx, "sshd started"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := v.ExpectString(short, "sshd started")
	if err == nil || !strings.Contains(err.Error(), "console tail") || !strings.Contains(err.Error(), "boot") {
		t.Errorf("second ExpectString before a new match = %v, want a deadline error with the console tail", err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		f, _ := os.OpenFile(v.ConsoleLog, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("kexec\nsshd started\n")
		f.Close()
	}()
	later, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if err := v.ExpectString(later, "sshd started"); err != nil {
		t.Errorf("ExpectString after a new line: %v", err)
	}
	close(v.done)
	if err := v.ExpectString(ctx, "never"); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("ExpectString after QEMU exit = %v, want an exit error", err)
	}
}
