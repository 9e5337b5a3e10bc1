// Package conformance runs directories of real disko layouts through the
// Go renderer inside one QEMU guest booted from the nixos-via installer,
// and checks each result against the layout itself.
package conformance

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/images"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/vmtests/testimg"
	"github.com/nixos-via/nixos-via/vmtests/vm"
)

const (
	maxDisks    = 16      // virtio disks the VM gets at most
	minDiskSize = 4 << 30 // sparse, so the size costs nothing
	maxDiskSize = 64 << 30
	root        = "/mnt"
)

// steps are the table's columns after the layout's name.
var steps = []string{"destroy,format,mount", "check", "unmount", "mount", "format again"}

type row struct {
	name    string
	disks   int
	start   string // state of the disks before destroy
	cells   []string
	result  string // pass, FAIL or skip
	reason  string
	details []string
	notes   []string
	dur     time.Duration
	used    []int // VM disk indexes the layout holds afterwards
	dirty   bool  // leave nothing for the next layout: wipe everything
}

// note records what is worth knowing but no failure; the same note of a
// later step is not repeated.
func (r *row) note(step int, notes ...string) {
	for _, n := range notes {
		dup := false
		for _, have := range r.notes {
			dup = dup || strings.HasSuffix(have, ": "+n)
		}
		if !dup {
			r.notes = append(r.notes, steps[step]+": "+n)
		}
	}
}

func (r *row) fail(step int, format string, a ...any) {
	r.cells[step] = "FAIL"
	r.result = "FAIL"
	r.details = append(r.details, fmt.Sprintf("%s: %s", steps[step], fmt.Sprintf(format, a...)))
}

// guest is the booted installer.
type guest struct {
	conn     *target.Conn
	disks    int
	diskSize int64
	kernel   string
	zfs      bool
	bcachefs bool
}

func caseDirs() []string {
	if d := os.Getenv("NIXOS_VIA_DISKO_CASES"); d != "" {
		return []string{d}
	}
	var dirs []string
	if shared := filepath.Join("..", "..", "..", "shared", "disko-cases"); dirExists(shared) {
		dirs = append(dirs, shared)
	}
	return append(dirs, "testdata")
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// TestDiskoConformance boots the installer once with blank disks and runs
// every layout of the case directories through destroy,format,mount, a
// check against the layout, unmount, mount and format again, one layout
// after the other. NIXOS_VIA_DISKO_CASES=DIR runs the .json layouts of DIR
// instead of ../shared/disko-cases plus testdata/.
func TestDiskoConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the conformance run boots a VM and takes minutes")
	}
	if err := vm.Available(); err != nil {
		t.Skip(err)
	}
	// Layouts expected to fail, with the reason; the test fails when one of
	// them passes, or when another layout fails.
	known := map[string]string{}

	cases, err := loadCases(caseDirs())
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("no .json layouts in %v", caseDirs())
	}
	disks, size := 1, int64(minDiskSize)
	for _, c := range cases {
		if n := len(c.Disks); n > disks {
			disks = min(n, maxDisks)
		}
		if c.NeedBytes+1<<30 > size && c.NeedBytes+1<<30 <= maxDiskSize {
			size = (c.NeedBytes + 1<<30 + 1<<30 - 1) &^ (1<<30 - 1)
		}
	}
	start := time.Now()
	g := bootInstaller(t, disks, size)
	t.Logf("installer up in %v: %d disks of %d GiB, kernel %s, zfs=%v bcachefs=%v", time.Since(start).Round(time.Second),
		disks, size>>30, g.kernel, g.zfs, g.bcachefs)

	ctx, cancel := context.WithTimeout(t.Context(), 80*time.Minute)
	defer cancel()
	var rows []*row
	var prev *row
	for _, c := range cases {
		r := g.runCase(ctx, t, c, prev)
		rows = append(rows, r)
		t.Logf("%s: %s %s (%v)", r.name, r.result, r.reason, r.dur.Round(time.Second))
		if r.result == "FAIL" && r.start != "blank" && r.start != "wiped" {
			// Once more on wiped disks: does it fail by itself, or only
			// over what the previous layout left?
			r = g.runCase(ctx, t, c, &row{dirty: true})
			r.name += " (again, wiped disks)"
			rows = append(rows, r)
			t.Logf("%s: %s %s (%v)", r.name, r.result, r.reason, r.dur.Round(time.Second))
		}
		if r.result != "skip" {
			prev = r
		}
	}
	total := time.Since(start)
	t.Logf("disko conformance, %d layouts, %v in all (boot included)\n%s", len(rows), total.Round(time.Second), table(rows, known))
	for _, r := range rows {
		why, isKnown := known[r.name]
		switch {
		case r.result == "FAIL" && !isKnown:
			t.Errorf("%s failed:\n  %s", r.name, strings.Join(r.details, "\n  "))
		case r.result == "pass" && isKnown:
			t.Errorf("%s passes now but is listed as a known failure (%s): remove it from the list", r.name, why)
		}
	}
}

func table(rows []*row, known map[string]string) string {
	var b strings.Builder
	b.WriteString("| layout | disks | start | " + strings.Join(steps, " | ") + " | result | time |\n|---|---|---|")
	b.WriteString(strings.Repeat("---|", len(steps)+2) + "\n")
	for _, r := range rows {
		res := r.result
		if r.reason != "" {
			res += ": " + r.reason
		}
		if why, ok := known[r.name]; ok && r.result == "FAIL" {
			res = "known failure: " + why
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", r.name, r.disks, r.start, strings.Join(r.cells, " | "), res, r.dur.Round(time.Second))
	}
	for _, r := range rows {
		for _, d := range r.details {
			fmt.Fprintf(&b, "\n%s: %s", r.name, d)
		}
		for _, n := range r.notes {
			fmt.Fprintf(&b, "\n%s (note): %s", r.name, n)
		}
	}
	return b.String()
}

// bootInstaller builds the installer with the test keys baked in, boots it
// directly (as a provider's rescue system) and connects as root.
func bootInstaller(t *testing.T, disks int, size int64) *guest {
	t.Helper()
	keys := testimg.TestKeys(t)
	agent := testimg.Agent(t)
	dir := t.TempDir()
	tarball := filepath.Join(dir, "installer.tar.gz")
	inst, err := images.BuildInstaller(t.Context(), tarball, images.InstallerOptions{Agent: agent,
		HostKeys: []images.HostKey{keys.HostKey}, AuthorizedKeys: []string{keys.ClientPub}})
	if err != nil {
		t.Fatalf("build the installer: %v", err)
	}
	kernel, initrd := filepath.Join(dir, "bzImage"), filepath.Join(dir, "initrd")
	if err := extract(tarball, map[string]string{"kexec/bzImage": kernel, "kexec/initrd": initrd}); err != nil {
		t.Fatal(err)
	}
	var vdisks []vm.Disk
	for i := 0; i < disks; i++ {
		vdisks = append(vdisks, vm.Disk{Size: size, Format: "raw", BootIndex: -1})
	}
	v := vm.Start(t, vm.Config{Name: "conformance", Kernel: kernel, Initrd: initrd, Cmdline: inst.Cmdline,
		MemoryMiB: 1024, CPUs: 1, Disks: vdisks, Timeout: 90 * time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cli, err := v.SSH("root", keys.ClientKeyFile, keys.HostKey.PublicLine)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.WaitUp(ctx); err != nil {
		t.Fatalf("installer ssh: %v", err)
	}
	conn, err := target.Dial(ctx, target.Options{Destination: fmt.Sprintf("root@127.0.0.1:%d", v.SSHPort),
		IdentityFiles: []string{keys.ClientKeyFile}, KnownHostsFiles: []string{cli.KnownHosts},
		StrictHostKeyChecking: target.StrictYes, SSHConfigFile: "none", ConnectTimeout: 20 * time.Second}, t.TempDir())
	if err != nil {
		t.Fatalf("connect to the installer: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	g := &guest{conn: conn, disks: disks, diskSize: size}
	// md and dm-raid resync in the background would fill the sparse disks
	// and eat the CPU: throttle it to nothing.
	out, err := conn.Output(ctx, `export PATH=/usr/sbin:/usr/bin:/sbin:/bin
modprobe md_mod 2>/dev/null; echo 1 > /proc/sys/dev/raid/speed_limit_min; echo 1 > /proc/sys/dev/raid/speed_limit_max
echo "kernel $(uname -r)"
command -v zpool >/dev/null 2>&1 && modprobe zfs 2>/dev/null && echo zfs
command -v bcachefs >/dev/null 2>&1 && { modprobe bcachefs 2>/dev/null; grep -qw bcachefs /proc/filesystems; } && echo bcachefs
true`, nil)
	if err != nil {
		t.Fatalf("probe the installer: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "kernel "):
			g.kernel = strings.TrimPrefix(l, "kernel ")
		case l == "zfs":
			g.zfs = true
		case l == "bcachefs":
			g.bcachefs = true
		}
	}
	return g
}

func extract(tarball string, want map[string]string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", tarball, err)
	}
	tr := tar.NewReader(zr)
	found := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tarball, err)
		}
		dst, ok := want[strings.TrimPrefix(h.Name, "./")]
		if !ok {
			continue
		}
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
		found++
	}
	if found != len(want) {
		return fmt.Errorf("%s: found %d of %d files %v", tarball, found, len(want), want)
	}
	return nil
}

func (g *guest) skipReason(c *layoutCase) string {
	switch {
	case len(c.Disks) > g.disks:
		return fmt.Sprintf("needs %d disks, the VM has %d", len(c.Disks), g.disks)
	case c.NeedBytes > g.diskSize:
		return fmt.Sprintf("needs about %d GiB per disk, the VM's disks have %d GiB", c.NeedBytes>>30, g.diskSize>>30)
	case c.Layout == nil:
		return ""
	case len(c.Layout.Zpools) > 0 && !g.zfs:
		return "ZFS: the installer has no zpool and its kernel " + g.kernel + " no zfs module"
	case len(c.Layout.Bcachefs) > 0 && !g.bcachefs:
		return "bcachefs: the installer has no bcachefs tool and its kernel " + g.kernel + " no bcachefs"
	}
	return interactive(c.Layout)
}

// teardown stops everything on every disk (mounts, swap, LVs, LUKS, md,
// pools) and wipes the given disks.
func (g *guest) teardown(ctx context.Context, wipe []int) error {
	var b strings.Builder
	b.WriteString(`export PATH=/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
umount -R ` + root + ` 2>/dev/null; swapoff -a 2>/dev/null
for i in 1 2 3; do
	command -v zpool >/dev/null 2>&1 && zpool export -a -f 2>/dev/null
	vgchange -an >/dev/null 2>&1
	for m in $(dmsetup ls --target crypt 2>/dev/null | awk 'NF == 2 {print $1}'); do cryptsetup close "$m" 2>/dev/null; done
	mdadm --stop --scan >/dev/null 2>&1
	dmsetup remove_all >/dev/null 2>&1
done
`)
	for _, i := range wipe {
		d := vmDisk(i)
		fmt.Fprintf(&b, "for p in %s[0-9]*; do [ -b \"$p\" ] && wipefs -a -f \"$p\" >/dev/null 2>&1; done; wipefs -a -f %s >/dev/null; sgdisk --zap-all %s >/dev/null 2>&1; blockdev --rereadpt %s 2>/dev/null\n", d, d, d, d)
	}
	b.WriteString("true\n")
	if _, err := g.conn.Output(ctx, b.String(), nil); err != nil {
		return fmt.Errorf("tear down and wipe: %w", err)
	}
	return nil
}

func (g *guest) script(ctx context.Context, l *disko.Layout, mode string, args ...string) error {
	m, err := disko.ParseMode(mode)
	if err != nil {
		return err
	}
	s, err := l.Script(m, disko.RenderOptions{RootMountpoint: root})
	if err != nil {
		return fmt.Errorf("render %s: %w", mode, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	if _, err := g.conn.Script(sctx, target.Script{Name: "disko " + mode, Body: s, Args: args, OnLine: func(string) {}}); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}

// diagnose shows the block devices, device-mapper tables and the /dev
// entries of the layout's VGs, for the report of a failed script.
func (g *guest) diagnose(ctx context.Context, l *disko.Layout) string {
	cmd := "export PATH=/usr/sbin:/usr/bin:/sbin:/bin; lsblk -o NAME,TYPE,FSTYPE,PARTLABEL,MOUNTPOINT; dmsetup ls; ls -la /dev/mapper"
	for _, v := range l.VGs {
		cmd += "; ls -la " + target.ShellQuote("/dev/"+v.Name)
	}
	out, err := g.conn.Output(ctx, cmd+"; true", nil)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

func (g *guest) probe(ctx context.Context, e *expect, mounted, keys bool) (*state, error) {
	var out strings.Builder
	_, err := g.conn.Script(ctx, target.Script{Name: "probe", Body: e.probeScript(mounted, keys), OnLine: func(l string) { out.WriteString(l + "\n") }})
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	return parseState(out.String()), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (g *guest) runCase(ctx context.Context, t *testing.T, c *layoutCase, prev *row) *row {
	r := &row{name: c.Name, disks: len(c.Disks), cells: make([]string, len(steps)), result: "pass"}
	for i := range r.cells {
		r.cells[i] = "–"
	}
	began := time.Now()
	defer func() { r.dur = time.Since(began) }()
	if why := g.skipReason(c); why != "" {
		r.result, r.reason = "skip", why
		for i := range r.cells {
			r.cells[i] = "skip"
		}
		return r
	}
	r.dirty = true // until the last step passes
	if c.Err != nil {
		r.fail(0, "%v", c.Err)
		return r
	}
	for i := range c.Disks {
		r.used = append(r.used, i)
	}
	// The previous layout stays mounted and open when this one uses all of
	// its disks: destroy must cope. Otherwise stop everything and wipe the
	// disks this layout does not use, so no stale label or VG name of an
	// unrelated disk can match.
	r.start = "blank"
	if prev != nil {
		r.start = "active"
		var wipe []int
		if prev.dirty {
			r.start = "wiped"
			for i := 0; i < g.disks; i++ {
				wipe = append(wipe, i)
			}
		} else {
			for _, i := range prev.used {
				if i >= len(c.Disks) {
					r.start = "closed"
				}
			}
			if r.start == "closed" {
				for i := len(c.Disks); i < g.disks; i++ {
					wipe = append(wipe, i)
				}
			}
		}
		if r.start != "active" {
			if err := g.teardown(ctx, wipe); err != nil {
				r.fail(0, "%v", err)
				return r
			}
		}
	}
	l := c.Layout
	files := keyFiles(l)
	for _, f := range files {
		cmd := fmt.Sprintf("umask 077 && mkdir -p %s && cat > %s", target.ShellQuote(filepath.Dir(f)), target.ShellQuote(f))
		if _, err := g.conn.Output(ctx, cmd, strings.NewReader(randomHex(32))); err != nil {
			r.fail(0, "write key file %s: %v", f, err)
			return r
		}
	}
	defer func() {
		for _, f := range files {
			g.conn.Output(ctx, "rm -f "+target.ShellQuote(f), nil)
		}
	}()
	e := newExpect(l, root)

	if err := g.script(ctx, l, "destroy,format,mount", "--yes-wipe-all-disks"); err != nil {
		r.fail(0, "%v", err)
		r.details = append(r.details, "state after the failure:\n"+g.diagnose(ctx, l))
		return r
	}
	r.cells[0] = "ok"
	token := c.Name + "-" + randomHex(4)
	if m := e.markerScript(token); m != "" {
		if _, err := g.conn.Output(ctx, m, nil); err != nil {
			r.fail(1, "write markers: %v", err)
		}
	}
	s, err := g.probe(ctx, e, true, true)
	if err != nil {
		r.fail(1, "%v", err)
		return r
	}
	problems, notes, ids := e.checkMounted(s, true)
	r.cells[1] = "ok"
	for _, p := range problems {
		r.fail(1, "%s", p)
	}
	r.note(1, notes...)
	mounted := s

	if err := g.script(ctx, l, "unmount"); err != nil {
		r.fail(2, "%v", err)
		return r
	}
	if s, err = g.probe(ctx, e, false, false); err != nil {
		r.fail(2, "%v", err)
		return r
	}
	r.cells[2] = "ok"
	for _, p := range e.checkUnmounted(s, mounted) {
		r.fail(2, "%s", p)
	}

	again := func(step int, mode string) bool {
		if err := g.script(ctx, l, mode); err != nil {
			r.fail(step, "%v", err)
			return false
		}
		s, err := g.probe(ctx, e, true, false)
		if err != nil {
			r.fail(step, "%v", err)
			return false
		}
		r.cells[step] = "ok"
		problems, notes, got := e.checkMounted(s, false)
		for _, p := range problems {
			r.fail(step, "%s", p)
		}
		diff, parts := changed(ids, got)
		for _, d := range diff {
			r.fail(step, "changed: %s", d)
		}
		r.note(step, notes...)
		if step == 4 {
			r.note(step, parts...)
		}
		return true
	}
	if !again(3, "mount") || !again(4, "format") {
		return r
	}
	r.dirty = r.result != "pass"
	return r
}
