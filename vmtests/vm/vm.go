// Package vm runs QEMU virtual machines for end-to-end tests: TCG only
// (never KVM), direct kernel boot or OVMF (UEFI), virtio disks, user
// networking restricted to the guest with one host forward
// 127.0.0.1:<free port> -> guest port 22 (and the guest addresses that
// Config.GuestForwards relays to servers on 127.0.0.1), and the serial
// console logged to a file that tests match with ExpectString.
package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/localvm"
)

// CPU is the TCG CPU model: qemu64 plus the features Debian's userland and
// aesni_intel use. `-cpu max` makes a kexec'd kernel unpack its initramfs
// about ten times slower (see research/vm-feasibility.md).
const CPU = "qemu64,+ssse3,+sse4.1,+sse4.2,+aes,+pclmulqdq,+popcnt"

// OVMF firmware from Debian's ovmf package.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Disk is one virtio-blk disk.
type Disk struct {
	// Size of a new disk in bytes (sparse). Ignored when Path is set.
	Size int64
	// Format is "qcow2" (default) or "raw".
	Format string
	// Path is an existing image to attach as is; with Overlay, a qcow2
	// overlay backed by it is used instead so the image stays untouched.
	Path    string
	Overlay bool
	// BootIndex orders UEFI boot devices (0 first); -1 leaves it unset.
	BootIndex int
	// Serial is the disk serial (visible as /dev/disk/by-id/virtio-<serial>).
	Serial string
}

// Config describes a VM.
type Config struct {
	// Name is used in file names and log lines.
	Name string
	// Direct kernel boot: Kernel, Initrd, Cmdline.
	Kernel, Initrd, Cmdline string
	// UEFI boots through OVMF with a private copy of the vars file.
	UEFI bool
	// MemoryMiB defaults to 512, CPUs to 1.
	MemoryMiB int
	CPUs      int
	Disks     []Disk
	// Machine is the QEMU machine type; default "q35" with UEFI, else "pc".
	Machine string
	// Timeout bounds the whole QEMU process (default 10 minutes).
	Timeout time.Duration
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
	// Forwards are guest TCP ports forwarded from the same port on
	// 127.0.0.1 (an installed sshd that listens on another port than 22).
	Forwards []int
	// GuestForwards are TCP addresses the guest may connect to (QEMU's
	// guestfwd), each relayed to a server on this machine's loopback.
	GuestForwards []GuestForward
	// ConsoleInput lets the test type on the serial console (VM.Type), e.g.
	// a LUKS passphrase the installed initrd asks for. The console is
	// still logged to ConsoleLog.
	ConsoleInput bool
}

// VM is a running QEMU process.
type VM struct {
	Name string
	// SSHPort is the host port forwarded to the guest's port 22.
	SSHPort int
	// Dir holds the console log, disks and firmware vars.
	Dir string
	// ConsoleLog is the serial console file.
	ConsoleLog string
	// DiskPaths are the attached disk files, in Config.Disks order.
	DiskPaths []string
	Started   time.Time

	cmd        *exec.Cmd
	cancel     context.CancelFunc
	qmp        string
	serialSock string // console input socket (Config.ConsoleInput)
	done       chan struct{}
	mu         sync.Mutex
	offset     int64 // console bytes consumed by ExpectString
	exitErr    error
}

// GuestForward lets the guest reach a server on this machine: its TCP
// connections to Guest ("10.0.2.100:80", inside the user network) go to
// Host, which must be on 127.0.0.1. QEMU runs `nc -N 127.0.0.1 PORT`
// (netcat-openbsd) for each connection: a guestfwd to a chardev would
// carry one connection for the whole life of the VM. restrict=on stays:
// the guest reaches these addresses and nothing else.
type GuestForward struct {
	Guest string
	Host  string
}

// guestForwards is the guestfwd options for fwds.
func guestForwards(fwds []GuestForward) (string, error) {
	var b strings.Builder
	for _, f := range fwds {
		gip, gport, err := net.SplitHostPort(f.Guest)
		if err != nil || net.ParseIP(gip) == nil {
			return "", fmt.Errorf("vm: guest forward %q: want IP:PORT", f.Guest)
		}
		hip, hport, err := net.SplitHostPort(f.Host)
		if err != nil || hip != "127.0.0.1" {
			return "", fmt.Errorf("vm: guest forward to %q: want 127.0.0.1:PORT", f.Host)
		}
		if _, err := strconv.Atoi(gport); err != nil {
			return "", fmt.Errorf("vm: guest forward %q: bad port: %w", f.Guest, err)
		}
		if _, err := strconv.Atoi(hport); err != nil {
			return "", fmt.Errorf("vm: guest forward to %q: bad port: %w", f.Host, err)
		}
		fmt.Fprintf(&b, ",guestfwd=tcp:%s:%s-cmd:nc -N %s %s", gip, gport, hip, hport)
	}
	return b.String(), nil
}

// forwards is the hostfwd options for ports, each from the same port here.
func forwards(ports []int) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, ",hostfwd=tcp:127.0.0.1:%d-:%d", p, p)
	}
	return b.String()
}

// Available reports why VMs cannot run here, or nil.
func Available() error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("qemu-system-x86_64 not found (install qemu-system-x86): %w", err)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return fmt.Errorf("qemu-img not found (install qemu-utils): %w", err)
	}
	return nil
}

// Start boots a VM for the test and stops it when the test ends. A test
// that fails gets the console tail in its log.
func Start(t testing.TB, cfg Config) *VM {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	v, err := StartIn(t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("start VM: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if exited, err := v.Exited(); exited {
				t.Logf("VM %s: QEMU exited: %v", v.Name, err)
			}
			t.Logf("console of VM %s (%s), last lines:\n%s", v.Name, v.ConsoleLog, v.ConsoleTail(60))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := v.Stop(ctx); err != nil {
			t.Logf("stop VM %s: %v", v.Name, err)
		}
	})
	return v
}

// StartIn boots a VM keeping its files in dir. The caller must Stop it.
func StartIn(dir string, cfg Config) (*VM, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	port, err := localvm.FreePort()
	if err != nil {
		return nil, err
	}
	v := &VM{Name: cfg.Name, SSHPort: port, Dir: dir, ConsoleLog: filepath.Join(dir, cfg.Name+"-console.log"), done: make(chan struct{})}
	// Unix socket paths are limited to 108 bytes; keep the QMP socket
	// short. The directory is made just before QEMU starts.
	sockDir := filepath.Join(os.TempDir(), fmt.Sprintf("vmqmp-%d-%d", os.Getpid(), port))
	v.qmp = filepath.Join(sockDir, "qmp.sock")
	args, err := v.qemuArgs(cfg, sockDir)
	if err != nil {
		return nil, err
	}
	if err := v.launch(cfg, sockDir, args); err != nil {
		return nil, err
	}
	return v, nil
}

// withDefaults is cfg with its defaults filled in, or why it cannot boot.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Name == "" {
		cfg.Name = "vm"
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Machine == "" {
		cfg.Machine = "pc"
		if cfg.UEFI {
			cfg.Machine = "q35"
		}
	}
	if cfg.Kernel == "" && !cfg.UEFI {
		return cfg, errors.New("vm: neither a kernel nor UEFI boot configured")
	}
	if (cfg.Initrd != "" || cfg.Cmdline != "") && cfg.Kernel == "" {
		return cfg, errors.New("vm: initrd or cmdline given without a kernel")
	}
	return cfg, nil
}

// qemuArgs is QEMU's command line for cfg, its sockets in sockDir. It
// makes the firmware vars copy and the disks in v.Dir (v.DiskPaths).
func (v *VM) qemuArgs(cfg Config, sockDir string) ([]string, error) {
	serial := "file:" + v.ConsoleLog
	if cfg.ConsoleInput {
		v.serialSock = filepath.Join(sockDir, "serial.sock")
		serial = "chardev:ser0"
		cfg.ExtraArgs = append([]string{"-chardev", "socket,id=ser0,path=" + v.serialSock + ",server=on,wait=off,logfile=" + v.ConsoleLog + ",logappend=on"}, cfg.ExtraArgs...)
	}
	guestFwds, err := guestForwards(cfg.GuestForwards)
	if err != nil {
		return nil, err
	}
	args := []string{
		"-name", cfg.Name,
		"-accel", "tcg", "-cpu", CPU,
		"-smp", strconv.Itoa(cfg.CPUs), "-m", strconv.Itoa(cfg.MemoryMiB),
		"-machine", cfg.Machine,
		"-nodefaults", "-display", "none", "-monitor", "none",
		"-serial", serial,
		"-qmp", "unix:" + v.qmp + ",server=on,wait=off",
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", v.SSHPort) + forwards(cfg.Forwards) + guestFwds,
		"-device", "virtio-net-pci,netdev=n0,romfile=",
		"-device", "virtio-rng-pci",
	}
	boot, err := bootArgs(v.Dir, cfg)
	if err != nil {
		return nil, err
	}
	args = append(args, boot...)
	disks, err := v.diskArgs(cfg)
	if err != nil {
		return nil, err
	}
	args = append(args, disks...)
	return append(args, cfg.ExtraArgs...), nil
}

// bootArgs is how cfg boots: OVMF with a private copy of its vars in dir,
// a kernel, or both.
func bootArgs(dir string, cfg Config) ([]string, error) {
	var args []string
	if cfg.UEFI {
		vars := filepath.Join(dir, cfg.Name+"-OVMF_VARS.fd")
		if err := copyFile(vars, OVMFVars); err != nil {
			return nil, fmt.Errorf("vm: copy OVMF vars (install ovmf): %w", err)
		}
		if _, err := os.Stat(OVMFCode); err != nil {
			return nil, fmt.Errorf("vm: OVMF firmware (install ovmf): %w", err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel)
		if cfg.Initrd != "" {
			args = append(args, "-initrd", cfg.Initrd)
		}
		if cfg.Cmdline != "" {
			args = append(args, "-append", cfg.Cmdline)
		}
	}
	return args, nil
}

// diskArgs makes cfg's disks in v.Dir and attaches them as virtio-blk.
func (v *VM) diskArgs(cfg Config) ([]string, error) {
	var args []string
	for i, d := range cfg.Disks {
		p, format, err := prepareDisk(v.Dir, cfg.Name, i, d)
		if err != nil {
			return nil, err
		}
		v.DiskPaths = append(v.DiskPaths, p)
		dev := fmt.Sprintf("virtio-blk-pci,drive=d%d", i)
		// With -kernel, QEMU gives the kernel boot index 0 itself.
		if d.BootIndex >= 0 && cfg.UEFI && cfg.Kernel == "" {
			dev += fmt.Sprintf(",bootindex=%d", d.BootIndex)
		}
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		args = append(args,
			"-drive", fmt.Sprintf("file=%s,if=none,id=d%d,format=%s,cache=unsafe", p, i, format),
			"-device", dev)
	}
	return args, nil
}

// launch starts QEMU with args, bounded by cfg.Timeout, and records how it
// ends; sockDir is removed once it exits.
func (v *VM) launch(cfg Config, sockDir string, args []string) error {
	if err := os.WriteFile(v.ConsoleLog, nil, 0o644); err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	if err := os.MkdirAll(sockDir, 0o700); err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := os.WriteFile(filepath.Join(v.Dir, cfg.Name+"-qemu.cmd"), []byte(strings.Join(append([]string{"qemu-system-x86_64"}, args...), " ")+"\n"), 0o644); err != nil {
		cancel()
		os.RemoveAll(sockDir)
		return fmt.Errorf("vm: %w", err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		os.RemoveAll(sockDir)
		return fmt.Errorf("vm: start qemu-system-x86_64: %w", err)
	}
	v.cmd, v.cancel, v.Started = cmd, cancel, time.Now()
	go func() {
		err := cmd.Wait()
		v.mu.Lock()
		if err != nil {
			v.exitErr = fmt.Errorf("qemu-system-x86_64: %w: %s", err, strings.TrimSpace(stderr.String()))
		} else if s := strings.TrimSpace(stderr.String()); s != "" {
			v.exitErr = fmt.Errorf("qemu-system-x86_64 exited: %s", s)
		}
		v.mu.Unlock()
		os.RemoveAll(sockDir)
		close(v.done)
	}()
	return nil
}

func prepareDisk(dir, name string, i int, d Disk) (path, format string, err error) {
	format = d.Format
	if format == "" {
		format = "qcow2"
	}
	if format != "qcow2" && format != "raw" {
		return "", "", fmt.Errorf("vm: disk %d: unknown format %q", i, format)
	}
	if d.Path != "" && !d.Overlay {
		return d.Path, format, nil
	}
	p := filepath.Join(dir, fmt.Sprintf("%s-disk%d.%s", name, i, format))
	switch {
	case d.Path != "":
		abs, err := filepath.Abs(d.Path)
		if err != nil {
			return "", "", err
		}
		out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", format, "-b", abs, p).CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("qemu-img create -b %s %s: %w: %s", abs, p, err, out)
		}
		return p, "qcow2", nil
	case d.Size <= 0:
		return "", "", fmt.Errorf("vm: disk %d: no size and no path", i)
	case format == "raw":
		f, err := os.Create(p)
		if err != nil {
			return "", "", fmt.Errorf("vm: %w", err)
		}
		defer f.Close()
		if err := f.Truncate(d.Size); err != nil {
			return "", "", fmt.Errorf("vm: %w", err)
		}
		return p, format, nil
	default:
		out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, strconv.FormatInt(d.Size, 10)).CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("qemu-img create %s: %w: %s", p, err, out)
		}
		return p, format, nil
	}
}

// PID returns QEMU's process id.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// Exited reports whether QEMU has exited, with its error if any.
func (v *VM) Exited() (bool, error) {
	select {
	case <-v.done:
		v.mu.Lock()
		defer v.mu.Unlock()
		return true, v.exitErr
	default:
		return false, nil
	}
}

// Wait waits for QEMU to exit (for example after the guest powers off).
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.done:
		_, err := v.Exited()
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for VM %s to exit: %w", v.Name, ctx.Err())
	}
}

// Console returns the whole console log so far.
func (v *VM) Console() string {
	data, _ := os.ReadFile(v.ConsoleLog)
	return string(data)
}

// ConsoleTail returns the last n lines of the console log.
func (v *VM) ConsoleTail(n int) string {
	lines := strings.Split(strings.TrimRight(v.Console(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ExpectString waits until s appears on the console after the end of the
// previous match, and moves past it. It fails when ctx ends or QEMU exits,
// with the console tail in the error.
func (v *VM) ExpectString(ctx context.Context, s string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(v.ConsoleLog)
		if err != nil {
			return fmt.Errorf("read console of VM %s: %w", v.Name, err)
		}
		v.mu.Lock()
		off := v.offset
		if off > int64(len(data)) {
			off = int64(len(data))
		}
		if i := bytes.Index(data[off:], []byte(s)); i >= 0 {
			v.offset = off + int64(i) + int64(len(s))
			v.mu.Unlock()
			return nil
		}
		v.mu.Unlock()
		if exited, qerr := v.Exited(); exited {
			return fmt.Errorf("VM %s exited before printing %q (%v); console tail:\n%s", v.Name, s, qerr, v.ConsoleTail(30))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VM %s: %q not on the console after %s: %w; console tail:\n%s",
				v.Name, s, time.Since(v.Started).Round(time.Millisecond), ctx.Err(), v.ConsoleTail(30))
		case <-tick.C:
		}
	}
}

// Type writes s to the serial console as if typed (Config.ConsoleInput).
func (v *VM) Type(ctx context.Context, s string) error {
	if v.serialSock == "" {
		return fmt.Errorf("VM %s: started without ConsoleInput", v.Name)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", v.serialSock)
	if err != nil {
		return fmt.Errorf("VM %s: console: %w", v.Name, err)
	}
	defer conn.Close()
	// Drain what QEMU echoes to this client so it never blocks.
	go io.Copy(io.Discard, conn)
	if _, err := io.WriteString(conn, s); err != nil {
		return fmt.Errorf("VM %s: type on the console: %w", v.Name, err)
	}
	// Give QEMU time to hand the bytes to the guest before the socket closes.
	time.Sleep(500 * time.Millisecond)
	return nil
}

// qmpCommand sends one QMP command and waits for its answer.
func (v *VM) qmpCommand(ctx context.Context, command string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", v.qmp)
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil { // greeting
		return fmt.Errorf("qmp greeting: %w", err)
	}
	for _, c := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(conn, `{"execute":%q}`+"\n", c); err != nil {
			return fmt.Errorf("qmp %s: %w", c, err)
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				if c == "quit" {
					return nil // QEMU may close before answering
				}
				return fmt.Errorf("qmp %s: %w", c, err)
			}
			var msg map[string]json.RawMessage
			if json.Unmarshal(line, &msg) != nil {
				continue
			}
			if e, ok := msg["error"]; ok {
				return fmt.Errorf("qmp %s: %s", c, e)
			}
			if _, ok := msg["return"]; ok {
				break
			}
		}
	}
	return nil
}

// Stop ends the VM: QMP "quit" (QEMU flushes its disks and exits), and if
// that does not end it within ctx, SIGKILL by PID.
func (v *VM) Stop(ctx context.Context) error {
	defer v.cancel()
	if exited, _ := v.Exited(); exited {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	qerr := v.qmpCommand(qctx, "quit")
	cancel()
	if qerr == nil {
		select {
		case <-v.done:
			return nil
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	if err := syscall.Kill(v.PID(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill qemu pid %d: %w", v.PID(), err)
	}
	<-v.done
	if qerr != nil {
		return fmt.Errorf("killed qemu pid %d after %v", v.PID(), qerr)
	}
	return nil
}

func copyFile(dst, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}
