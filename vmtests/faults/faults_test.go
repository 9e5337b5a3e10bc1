// Package faults is the fault matrix of an install: the real nixos-via
// binary installs vmtests/flake#efi-ext4 into a QEMU provider VM (as
// vmtests/e2e does), and at a chosen point, spotted in its --json events,
// the test injects a fault: the SSH connection cut (a loopback proxy between
// nixos-via and the VM's forward closes every connection), nixos-via
// stopped with SIGINT, or killed with SIGKILL. The same command is then run
// again and must install a system that boots, without erasing a disk that
// already holds the new system.
//
// CI runs one fault per point (rows); NIXOS_VIA_FAULTS=full runs every
// fault at every point. vmtests/README.md holds the matrix.
package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/images"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
	"github.com/nixos-via/nixos-via/vmtests/vm"
)

// point is where in the install a fault is injected: the first step event
// of phase whose message starts with msg, then after delay.
type point struct {
	name  string
	phase string
	msg   string
	delay time.Duration
	// afterDisko: the disk already holds our layout when the fault hits,
	// so the re-run must not erase it again.
	afterDisko bool
	// survives is a fault the step rides out by design: the reboot wait
	// expects every connection to drop and dials anew, so a cut there
	// must not fail the install.
	survives fault
}

var points = []point{
	{name: "upload", phase: "kexec", msg: "uploading the installer to", delay: 2 * time.Second},
	{name: "installer-wait", phase: "kexec", msg: "waiting for the installer on", delay: 500 * time.Millisecond},
	{name: "disko", phase: "disko", msg: "partitioning, formatting and mounting", delay: 4 * time.Second},
	{name: "closure-copy", phase: "install", msg: "copying the system closure", delay: 1500 * time.Millisecond, afterDisko: true},
	{name: "registration", phase: "install", msg: "registering the closure", afterDisko: true},
	{name: "bootloader", phase: "install", msg: "installing the bootloader", delay: time.Second, afterDisko: true},
	{name: "reboot-wait", phase: "reboot", msg: "rebooting into the installed system", delay: 2 * time.Second, afterDisko: true, survives: cut},
}

type fault string

const (
	cut     fault = "cut"
	sigint  fault = "SIGINT"
	sigkill fault = "SIGKILL"
)

var faults = []fault{cut, sigint, sigkill}

// ciFault is the one fault CI injects at each point (rotating the faults).
func ciFault(i int) fault { return faults[i%len(faults)] }

// ciCells are the cells CI runs: the ones that have passed in a VM so far
// (see vmtests/README.md). A cell joins CI once it has passed under
// NIXOS_VIA_FAULTS=full or -run, so an unproven cell cannot fail CI, and
// CI's time stays within its budget (~3 min a cell).
var ciCells = map[string]bool{"upload/cut": true, "disko/SIGKILL": true, "registration/SIGINT": true}

// TestFaultMatrix runs the rows: for each point, the faults CI (or
// NIXOS_VIA_FAULTS=full) asks for, each in a fresh VM.
func TestFaultMatrix(t *testing.T) {
	w := setup(t)
	full := os.Getenv("NIXOS_VIA_FAULTS") == "full"
	var cells []string
	for i, p := range points {
		fs := []fault{ciFault(i)}
		if full {
			fs = faults
		} else if !ciCells[p.name+"/"+string(fs[0])] {
			fs = nil
		}
		for _, f := range fs {
			t.Run(p.name+"/"+string(f), func(t *testing.T) {
				cells = append(cells, w.row(t, p, f))
			})
		}
	}
	t.Logf("matrix cells (point | fault | first run | re-run):\n%s", strings.Join(cells, "\n"))
}

// row injects f at p, then re-runs the command and checks the end state.
// It returns the matrix cell.
func (w *world) row(t *testing.T, p point, f fault) string {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	v, proxy, args := w.boot(t, p.name)
	start := time.Now()
	first := w.runWithFault(t, ctx, args, p, func(cmd *exec.Cmd) {
		switch f {
		case cut:
			proxy.Cut()
		case sigint:
			cmd.Process.Signal(syscall.SIGINT)
		case sigkill:
			cmd.Process.Kill()
		}
	})
	t.Logf("first run: exit %d after %s", first.code, time.Since(start).Round(time.Second))
	if !first.fired {
		t.Fatalf("the point %q never came (exit %d)\n%s\n--- console ---\n%s", p.name, first.code, first.out, v.ConsoleTail(40))
	}
	if later := laterPoint(p, first.landed); later != "" {
		t.Errorf("the fault landed in %q, the %s point, not in %s: shorten the point's delay", first.landed, later, p.name)
	}
	switch {
	case f == p.survives:
		if first.code != 0 || !strings.Contains(first.out, "the installed system is up") {
			t.Errorf("first run: exit %d after a %s at %s, which the step must ride out\n%s", first.code, f, p.name, first.out)
		}
	case first.code == 0:
		t.Errorf("first run: exit 0 despite %s at %s", f, p.name)
	default:
		checkFirstMessage(t, f, first)
	}
	t.Logf("first run said:\n%s", plainLines(first.out))
	start = time.Now()
	again := w.runWithFault(t, ctx, args, point{}, nil)
	t.Logf("re-run: exit %d after %s", again.code, time.Since(start).Round(time.Second))
	rerun := "installed, boots"
	if strings.Contains(again.out, "nothing was done") {
		rerun = "already up, nothing done"
	}
	if again.code != 0 || !strings.Contains(again.out, "the installed system is up") {
		t.Errorf("re-run: exit %d, want an installed system that is up\n%s\n--- console ---\n%s", again.code, again.out, v.ConsoleTail(40))
		rerun = fmt.Sprintf("FAILED (exit %d)", again.code)
	}
	if p.afterDisko && strings.Contains(again.out, "ERASE") {
		t.Errorf("re-run erased the disk again though it held the new system's layout:\n%s", again.out)
		rerun += ", ERASED AGAIN"
	}
	return fmt.Sprintf("| %s | %s | exit %d | %s |", p.name, f, first.code, rerun)
}

// laterPoint names the point after p whose step landed is, or "": a fault
// meant for p that lands there tests another row.
func laterPoint(p point, landed string) string {
	after := false
	for _, q := range points {
		if after && strings.HasPrefix(landed, q.phase+": "+q.msg) {
			return q.name
		}
		after = after || q.name == p.name
	}
	return ""
}

// checkFirstMessage: a run that could speak (cut, SIGINT) says where the
// host is and what to run next; SIGKILL leaves no message to check.
func checkFirstMessage(t *testing.T, f fault, r result) {
	t.Helper()
	if f == sigkill {
		return
	}
	for _, want := range []string{"The host now: ", "nixos-via "} {
		if !strings.Contains(r.out, want) {
			t.Errorf("after %s the message does not say %q:\n%s", f, want, r.out)
		}
	}
	if !strings.Contains(r.out, "To go on from here") && !strings.Contains(r.out, "Next: ") && !strings.Contains(r.out, "run the same command") {
		t.Errorf("after %s the message names no command to continue:\n%s", f, r.out)
	}
}

// plainLines is out without its JSON events: what nixos-via said.
func plainLines(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !json.Valid([]byte(l)) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

type result struct {
	code  int
	out   string
	fired bool
	// landed is the last step event before the fault hit: a fault that
	// lands in a later step tests another point than its row says.
	landed string
}

// runWithFault runs the nixos-via binary with --json and calls inject once
// the first step event of p appears (nil inject: no fault).
func (w *world) runWithFault(t *testing.T, ctx context.Context, args []string, p point, inject func(*exec.Cmd)) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, w.bin, append([]string{"--json"}, args...)...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", w.bin, err)
	}
	pw.Close()
	var out bytes.Buffer
	var once sync.Once
	var mu sync.Mutex
	fired, last, landed := false, "", ""
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		var e event.Event
		if inject == nil || json.Unmarshal([]byte(line), &e) != nil || e.Kind != event.Step {
			continue
		}
		mu.Lock()
		last = e.Phase + ": " + e.Msg
		mu.Unlock()
		if e.Phase == p.phase && strings.HasPrefix(e.Msg, p.msg) {
			once.Do(func() {
				fired = true
				go func() {
					time.Sleep(p.delay)
					mu.Lock()
					landed = last
					mu.Unlock()
					inject(cmd)
				}()
			})
		}
	}
	pr.Close()
	code := 0
	if err := cmd.Wait(); err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return result{code: code, out: out.String(), fired: fired, landed: landed}
}

// world is what every row needs.
type world struct {
	keys      *testimg.Keys
	provDisk  string
	installer string
	bin       string // the static nixos-via: the CLI here and the agent there
	flake     string
}

func flakeDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "flake")
}

func setup(t *testing.T) *world {
	t.Helper()
	if err := vm.Available(); err != nil {
		t.Skipf("no VMs here: %v", err)
	}
	for _, tool := range []string{"nix", "mkfs.vfat", "mcopy", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s (run vmtests/setup.sh)", tool)
		}
	}
	keys := testimg.TestKeys(t)
	// The test systems authorize the snakeoil key: the provider gets it too.
	snake := filepath.Join(t.TempDir(), "snakeoil")
	priv, err := os.ReadFile(filepath.Join(flakeDir(t), "keys", "snakeoil_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snake, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(flakeDir(t), "keys", "snakeoil_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	keys.ClientKeyFile, keys.ClientPub = snake, strings.TrimSpace(string(pub))
	prov := testimg.Provider(t, keys, "")
	disk := filepath.Join(t.TempDir(), "provider-disk.qcow2")
	if err := images.BuildBootDisk(t.Context(), disk, prov.Kernel, prov.Initrd, prov.Cmdline); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(flakeDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return &world{keys: keys, provDisk: disk, installer: testimg.Installer(t).Path,
		bin: testimg.Agent(t), flake: "path:" + abs}
}

// boot starts a provider VM under OVMF with one blank target disk, a proxy
// in front of its SSH forward, and returns the install command's arguments.
func (w *world) boot(t *testing.T, name string) (*vm.VM, *sshtest.Proxy, []string) {
	t.Helper()
	v := vm.Start(t, vm.Config{Name: name, MemoryMiB: 512, UEFI: true, Timeout: 20 * time.Minute, Disks: []vm.Disk{
		{Size: 3 << 30, Format: "raw", BootIndex: 0, Serial: "target0"},
		{Path: w.provDisk, Overlay: true, BootIndex: 1}}})
	proxy := sshtest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", v.SSHPort))
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s\n", proxy.Port, w.keys.HostKey.PublicLine)
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return v, proxy, []string{"--flake", w.flake + "#efi-ext4", "--kexec", w.installer, "--agent", w.bin,
		"-i", w.keys.ClientKeyFile, "--ssh-option", "UserKnownHostsFile=" + kh,
		"--option", "substituters", "", "--timeout-kexec", "4m", "--timeout-reboot", "4m", "--yes",
		fmt.Sprintf("root@127.0.0.1:%d", proxy.Port)}
}
