package localvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/kexec"
	"github.com/nixos-via/nixos-via/sequence"
)

// Phase names the events of a --vm-test run of their own.
const Phase = "vm-test"

// Options shape a --vm-test run.
type Options struct {
	Accel string // --vm-accel: kvm, tcg or auto ("")
	// Probe checks KVM for auto; nil is ProbeKVM.
	Probe func(context.Context) error
	// BootTimeout bounds the wait for the installer's sshd (default 10m).
	BootTimeout time.Duration
}

// New is the VM of one --vm-test run, the sequence.VM of its Plan: the
// install goes into a throwaway local VM instead of the plan's host. The
// installer tarball (--kexec, or the default release) is booted directly
// on blank disks made for the layout's devices; the plan's phases from
// disko on run through the real code against it (over a 127.0.0.1
// forward), and the reboot phase checks the system that boots from the
// VM's disk (through OVMF when the layout has an ESP). Close stops the VM
// and removes every file of it, whatever happened (ctx cancelled too); a
// failure stays the phase's own error (its exit code) with the VM's
// console tail.
func New(opts Options) *Machine {
	if opts.Probe == nil {
		opts.Probe = ProbeKVM
	}
	if opts.BootTimeout == 0 {
		opts.BootTimeout = 10 * time.Minute
	}
	return &Machine{opts: opts, sink: event.Discard{}}
}

// Machine is the VM of one run.
type Machine struct {
	opts Options
	sink event.Sink

	mu        sync.Mutex
	s         *Session
	boot      Boot // the installer's boot
	rebooting bool // the installed system was told to reboot
	fromDisk  bool // the VM booted from its disk
	restart   error
	closed    bool
	stopWatch chan struct{}
}

var _ sequence.VM = (*Machine)(nil)

// Boot makes the disks for the layout, boots the installer and waits for
// its sshd; it returns how to reach the installer.
func (m *Machine) Boot(ctx context.Context, b sequence.VMBoot) (target.Options, error) {
	if b.Sink != nil {
		m.sink = b.Sink
	}
	if b.Layout == nil {
		return target.Options{}, phase.Usagef("--vm-test needs the configuration's disko layout")
	}
	specs, err := Disks(b.Layout, b.Needs.DiskMinBytes)
	if err != nil {
		return target.Options{}, phase.Usagef("--vm-test: %v", err)
	}
	accel, err := ChooseAccel(ctx, m.opts.Accel, m.opts.Probe)
	if err != nil {
		return target.Options{}, phase.Usagef("%v", err)
	}
	src := b.Kexec.Source
	if src == "" {
		if src, err = kexec.DefaultURL("x86_64"); err != nil {
			return target.Options{}, err
		}
	}
	tb, err := kexec.FetchTarball(ctx, src, m.sink, b.Kexec)
	if err != nil {
		return target.Options{}, err
	}
	s, err := NewSession(specs, HasESP(b.Layout), accel)
	if err != nil {
		return target.Options{}, err
	}
	m.mu.Lock()
	m.s = s
	m.mu.Unlock()
	in, err := InstallerFrom(tb, s.Dir)
	if err != nil {
		return target.Options{}, err
	}
	port, err := FreePort()
	if err != nil {
		return target.Options{}, err
	}
	m.boot = Boot{Kernel: in.Kernel, Initrd: in.Initrd, Cmdline: in.Cmdline, SSHPort: port, NoReboot: true,
		MemoryMiB: max(2048, 1024+int(2*tb.InitrdUnpacked>>20)), Forwards: b.Ports}
	firmware := "BIOS"
	if s.UEFI {
		firmware = "OVMF"
	}
	fwd := ""
	for _, p := range b.Ports {
		fwd += fmt.Sprintf(", 127.0.0.1:%d to its %d", p, p)
	}
	m.step("booting the installer in a local VM (%s, %s, %d MiB, %d blank disks in %s; ssh on 127.0.0.1:%d%s)",
		accel, firmware, m.boot.MemoryMiB, len(specs), s.Dir, port, fwd)
	m.mu.Lock()
	err = s.Start(m.boot)
	if err == nil {
		m.stopWatch = make(chan struct{})
		go m.watch(s.Exited(), m.stopWatch)
	}
	m.mu.Unlock()
	if err != nil {
		return target.Options{}, err
	}
	if err := m.waitSSH(ctx, s.Exited(), port); err != nil {
		return target.Options{}, err
	}
	o := b.Target
	o.Destination, o.User, o.Port = "127.0.0.1", "root", port
	o.ProxyJump, o.ProxyCommand = "none", "none"
	o.SSHOptions = localOptions(o.SSHOptions)
	o.Signers = append([]ssh.Signer{in.Signer}, o.Signers...)
	o.PinnedKey, o.PinnedKeys, o.PinSource = in.HostKey, nil, "the host key given to the VM's installer"
	o.HostKeyPin, o.HostKeyPins = "", nil
	// The installed system's new key is recorded here, never in the
	// user's known_hosts.
	o.KnownHostsFiles = []string{filepath.Join(s.Dir, "known_hosts")}
	o.StrictHostKeyChecking, o.ReplaceKnownHost = target.StrictAcceptNew, false
	return o, nil
}

// localOptions are the -o options that still apply to the VM: those
// naming where and how to reach a host, or its known keys, do not.
func localOptions(opts []string) []string {
	var out []string
	for _, o := range opts {
		k, _, _ := strings.Cut(strings.TrimSpace(strings.ReplaceAll(o, "=", " ")), " ")
		switch strings.ToLower(k) {
		case "port", "user", "hostname", "proxyjump", "proxycommand", "stricthostkeychecking", "userknownhostsfile":
			continue
		}
		out = append(out, o)
	}
	return out
}

// Close stops the VM, removes its files and says how the run went: err,
// with why the VM could not boot from its disk and its console's last
// lines, or a summary when err is nil.
func (m *Machine) Close(err error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return err
	}
	m.closed = true
	if m.stopWatch != nil {
		close(m.stopWatch)
	}
	if m.s == nil {
		return err
	}
	if err != nil && m.restart != nil {
		err = fmt.Errorf("%w (the VM could not be started from its disk: %v)", err, m.restart)
	}
	if err != nil {
		if tail := m.s.ConsoleTail(30); tail != "" {
			err = fmt.Errorf("%w\n--- the VM's console (last lines) ---\n%s", err, tail)
		}
	}
	if cerr := m.s.Close(); cerr != nil {
		return errors.Join(err, cerr)
	}
	m.info("the VM was stopped and %s removed", m.s.Dir)
	if err == nil {
		what := "the planned phases ran in the VM"
		if m.fromDisk {
			what = "installed into the VM, which rebooted from its own disk (what the reboot check saw is above)"
		}
		m.sink.Emit(event.Event{Phase: Phase, Kind: event.Done, Msg: "vm-test passed: " + what})
	}
	return err
}

// Rebooting arms the watcher: the installer's reboot ends QEMU
// (-no-reboot), and the VM is then started again from its disk.
func (m *Machine) Rebooting() {
	m.mu.Lock()
	m.rebooting = true
	m.mu.Unlock()
}

// watch starts the VM from its disk once the installer rebooted.
func (m *Machine) watch(exited, stop <-chan struct{}) {
	select {
	case <-exited:
	case <-stop:
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !m.rebooting {
		return
	}
	b := Boot{SSHPort: m.boot.SSHPort, MemoryMiB: m.boot.MemoryMiB, Forwards: m.boot.Forwards}
	m.restart = m.s.Start(b)
	if m.restart == nil {
		m.fromDisk = true
		m.info("the installer rebooted: the VM boots from its disk now")
	}
}

// waitSSH waits until the VM's forward answers with an SSH banner (QEMU
// accepts on the port at once, the guest's sshd comes later), or the VM
// ends, or the deadline.
func (m *Machine) waitSSH(ctx context.Context, exited <-chan struct{}, port int) error {
	timeout := m.opts.BootTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var last error
	for {
		if last = banner(ctx, addr); last == nil {
			m.info("the installer answers on %s", addr)
			return nil
		}
		select {
		case <-exited:
			return &phase.Error{Phase: phase.Kexec, Err: fmt.Errorf("the VM ended before its installer answered on %s", addr)}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &phase.Error{Phase: phase.Kexec, Err: fmt.Errorf("the VM's installer did not answer on %s within %s (last: %v)", addr, timeout, last)}
			}
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// banner reads the first bytes the guest sends on addr.
func banner(ctx context.Context, addr string) error {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("read the SSH banner: %w", err)
	}
	if string(b) != "SSH-" {
		return fmt.Errorf("read the SSH banner: got %q", b)
	}
	return nil
}

func (m *Machine) step(format string, a ...any) {
	m.sink.Emit(event.Event{Phase: Phase, Kind: event.Step, Msg: fmt.Sprintf(format, a...)})
}

func (m *Machine) info(format string, a ...any) {
	m.sink.Emit(event.Event{Phase: Phase, Kind: event.Info, Msg: fmt.Sprintf(format, a...)})
}
