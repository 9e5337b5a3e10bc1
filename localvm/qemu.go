package localvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// OVMF firmware (Debian's ovmf package), as the VM tests use it.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// cpu is the TCG CPU model the VM tests use (see vmtests/vm).
const cpu = "qemu64,+ssse3,+sse4.1,+sse4.2,+aes,+pclmulqdq,+popcnt"

// Session owns a throwaway VM's files: its disks, firmware vars and
// console log in one temp dir, removed by Close with the VM.
type Session struct {
	Dir   string
	Disks []string // disk images, in attach order
	specs []DiskSpec
	UEFI  bool
	Accel string
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
}

// Boot is one boot of the VM: the installer by direct kernel boot, or
// (Kernel empty) the installed system from its disks.
type Boot struct {
	Kernel, Initrd, Cmdline string
	MemoryMiB               int
	SSHPort                 int // 127.0.0.1 port forwarded to the guest's 22
	// NoReboot makes a reboot of the guest end QEMU (Exited) instead of
	// booting the same kernel again.
	NoReboot bool
	// Forwards are guest ports forwarded from the same port on 127.0.0.1.
	Forwards []int
}

// NewSession makes blank qcow2 disks for specs in a new temp dir.
func NewSession(specs []DiskSpec, uefi bool, accel string) (s *Session, err error) {
	dir, err := os.MkdirTemp("", "nixos-via-vmtest-")
	if err != nil {
		return nil, fmt.Errorf("make the VM's temp dir: %w", err)
	}
	s = &Session{Dir: dir, specs: specs, UEFI: uefi, Accel: accel}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for i, d := range specs {
		p := filepath.Join(dir, fmt.Sprintf("disk%d-%s.qcow2", i, d.Attr))
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, strconv.FormatInt(d.Size, 10)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("qemu-img create %s: %w: %s", p, err, out)
		}
		s.Disks = append(s.Disks, p)
	}
	if uefi {
		b, err := os.ReadFile(OVMFVars)
		if err != nil {
			return nil, fmt.Errorf("read OVMF vars: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "OVMF_VARS.fd"), b, 0o600); err != nil {
			return nil, fmt.Errorf("copy OVMF vars: %w", err)
		}
	}
	return s, nil
}

// Args is the QEMU command line for b.
func (s *Session) Args(b Boot) []string {
	mem := b.MemoryMiB
	if mem == 0 {
		mem = 2048
	}
	args := []string{"-accel", s.Accel, "-m", strconv.Itoa(mem), "-smp", "1", "-nodefaults", "-display", "none",
		"-serial", "file:" + filepath.Join(s.Dir, "console.log"),
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", b.SSHPort) + forwards(b.Forwards),
		"-device", "virtio-net-pci,netdev=n0"}
	if s.Accel == "tcg" {
		args = append(args, "-cpu", cpu)
	} else {
		args = append(args, "-cpu", "host")
	}
	if s.UEFI {
		args = append(args, "-machine", "q35",
			"-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,file="+filepath.Join(s.Dir, "OVMF_VARS.fd"))
	} else {
		args = append(args, "-machine", "pc")
	}
	if b.Kernel != "" {
		args = append(args, "-kernel", b.Kernel, "-initrd", b.Initrd, "-append", b.Cmdline)
	}
	if b.NoReboot {
		args = append(args, "-no-reboot")
	}
	for i, p := range s.Disks {
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=qcow2,if=none,id=d%d", p, i))
		dev := fmt.Sprintf("virtio-blk-pci,drive=d%d", i)
		if b.Kernel == "" {
			// A direct kernel boot takes boot index 0 itself.
			dev += fmt.Sprintf(",bootindex=%d", i)
		}
		if s.specs[i].Serial != "" {
			dev += ",serial=" + s.specs[i].Serial
		}
		args = append(args, "-device", dev)
	}
	return args
}

// forwards are QEMU user-net options forwarding each port from the same
// port on 127.0.0.1.
func forwards(ports []int) string {
	var out string
	for _, p := range ports {
		out += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", p, p)
	}
	return out
}

// Start boots b; the previous boot, if any, must have been stopped.
func (s *Session) Start(b Boot) error {
	cmd := exec.Command("qemu-system-x86_64", s.Args(b)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qemu-system-x86_64: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(s.done)
	// A bad argument or a missing accelerator ends QEMU at once.
	select {
	case <-s.done:
		return fmt.Errorf("qemu-system-x86_64 exited at once (%s): %s", cmd.ProcessState, strings.TrimSpace(stderr.String()))
	case <-time.After(500 * time.Millisecond):
	}
	return nil
}

// Exited is closed once the VM started last has exited (nil before Start).
func (s *Session) Exited() <-chan struct{} { return s.done }

// Stop kills the running VM, if any, and waits for it.
func (s *Session) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// ConsoleTail is the last n lines of the VM's serial console.
func (s *Session) ConsoleTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "console.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Close stops the VM and removes every file of the session.
func (s *Session) Close() error {
	s.Stop()
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove %s: %w", s.Dir, err)
	}
	return nil
}

// FreePort is a TCP port on 127.0.0.1 free right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitPort waits until port on 127.0.0.1 accepts connections.
func WaitPort(ctx context.Context, port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", addr, errors.Join(ctx.Err(), err))
		case <-time.After(time.Second):
		}
	}
}
