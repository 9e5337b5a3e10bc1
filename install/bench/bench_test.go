// Package bench compares nixos-via's closure copy with `nix copy` over
// ssh:// and a plain `tar | zstd | ssh` pipe, on loopback. It is not a timed
// test: run it with bench.sh, which builds the synthetic closure first.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/sshtest"
)

type result struct {
	name      string
	wall      time.Duration
	wire      int64
	maxRSSKB  int64
	clientCPU time.Duration // user+system of the client's process tree
	serverCPU time.Duration // user+system of sshd's sessions and what they ran
	// compression is what went over the wire: the zstd levels nixos-via's
	// channels used, or the method's fixed choice.
	compression string
	out         []byte
	// stolen is the share of the machine's CPU time the hypervisor gave to
	// other guests during the run (steal in /proc/stat): wall times of
	// rounds with much of it say more about the neighbours than about us.
	stolen float64
}

type env struct {
	store, pathsFile, work string
	paths                  []string
	narBytes               uint64
	via                    string
	server                 *sshtest.Server
	sshdPID                int
	proxy                  *sshtest.Proxy
	knownHosts             string
	link                   string          // "" (loopback speed) or "a N Mbit/s link"
	mounted                map[string]bool // target roots with an ext4 mounted on them
	plainRoots             bool            // no loop devices: targets are plain directories
}

// cpuSteal reads the machine's stolen and total CPU time, in clock ticks,
// from the first line of /proc/stat (zeros where it cannot).
func cpuSteal() (steal, total uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i == 7 {
			steal = n
		}
	}
	return steal, total
}

// childrenCPU is the CPU time of the reaped children of pid (cutime+cstime
// in /proc/pid/stat): for sshd, every session and the commands they ran.
func childrenCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which is in parentheses) start at field 3.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	cu, _ := strconv.ParseInt(f[13], 10, 64)        // field 16, cutime
	cs, _ := strconv.ParseInt(f[14], 10, 64)        // field 17, cstime
	return time.Duration(cu+cs) * time.Second / 100 // USER_HZ
}

func setup(b *testing.B) *env {
	store, pathsFile := os.Getenv("NIXOS_VIA_BENCH_STORE"), os.Getenv("NIXOS_VIA_BENCH_PATHS")
	if store == "" || pathsFile == "" {
		b.Skip("set NIXOS_VIA_BENCH_STORE and NIXOS_VIA_BENCH_PATHS (install/bench/bench.sh does)")
	}
	sshtest.Need(b)
	for _, tool := range []string{"nix", "ssh", "tar", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	e := &env{store: store, pathsFile: pathsFile, work: b.TempDir()}
	data, err := os.ReadFile(pathsFile)
	if err != nil {
		b.Fatal(err)
	}
	e.paths = strings.Fields(string(data))
	infos, err := nix.CLI{Args: []string{"--store", store}}.PathInfo(context.Background(), e.paths...)
	if err != nil {
		b.Fatal(err)
	}
	for _, info := range infos {
		e.narBytes += info.NarSize
	}
	e.via = filepath.Join(e.work, "via")
	build := exec.Command("go", "build", "-o", e.via, "./via")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build via: %v: %s", err, out)
	}
	e.server = sshtest.Start(b, sshtest.Options{})
	out, err := exec.Command("pgrep", "-f", "sshd -D -e -f "+filepath.Join(e.server.Dir, "sshd_config")).Output()
	if err != nil {
		b.Fatalf("find the test sshd: %v", err)
	}
	if e.sshdPID, err = strconv.Atoi(strings.Fields(string(out))[0]); err != nil {
		b.Fatal(err)
	}
	e.proxy = sshtest.StartProxy(b, e.server.Addr)
	// NIXOS_VIA_BENCH_MBIT=N: the proxy is a link of N Mbit/s each way, as
	// between a workstation and a server, instead of loopback speed.
	if mbit, err := strconv.ParseFloat(os.Getenv("NIXOS_VIA_BENCH_MBIT"), 64); err == nil && mbit > 0 {
		e.proxy.SetRate(mbit * 1e6 / 8)
		e.link = fmt.Sprintf("a %g Mbit/s link", mbit)
	}
	e.knownHosts = filepath.Join(e.work, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", e.proxy.Port, ssh.MarshalAuthorizedKey(e.server.HostKey))
	if err := os.WriteFile(e.knownHosts, []byte(line), 0o600); err != nil {
		b.Fatal(err)
	}
	// Warm the page cache so every method reads the sources from memory.
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("cd %s && sed 's|^/||' %s | tar -cf - -T - >/dev/null", store, pathsFile)).CombinedOutput(); err != nil {
		b.Fatalf("warm-up: %v: %s", err, out)
	}
	return e
}

func (e *env) sshOpts() string {
	return fmt.Sprintf("-p %d -i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR",
		e.proxy.Port, e.server.ClientKey, e.knownHosts)
}

// run runs a shell command line and measures wall time, bytes through the
// proxy (client to server) and the peak RSS of the client's process tree.
func (e *env) run(b *testing.B, name, script string, extraEnv ...string) result {
	b.Helper()
	before := e.proxy.BytesToTarget()
	serverBefore := childrenCPU(b, e.sshdPID)
	stealBefore, totalBefore := cpuSteal()
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), extraEnv...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	stealAfter, totalAfter := cpuSteal()
	if err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	stolen := 0.0
	if totalAfter > totalBefore {
		stolen = float64(stealAfter-stealBefore) / float64(totalAfter-totalBefore)
	}
	// Connections are counted when they close; give the proxy a moment.
	var wire int64
	for i := 0; i < 100; i++ {
		if wire = e.proxy.BytesToTarget() - before; wire > 0 && i > 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return result{name: name, wall: wall, wire: wire, maxRSSKB: ru.Maxrss, out: out, stolen: stolen,
		clientCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
		serverCPU: childrenCPU(b, e.sshdPID) - serverBefore}
}

// freshRoot returns an empty target root for name. As an install writes
// into filesystems disko has just made, each root is a freshly made ext4 on a
// loop device (a sparse image in the work directory), unmounted at the end.
// Without mkfs.ext4 or loop devices it falls back to an empty directory, which
// is slower for every method alike: ext4 scans recently deleted inodes when
// it allocates new ones on a filesystem where the previous round's files were
// just removed.
func (e *env) freshRoot(b *testing.B, name string) string {
	root := filepath.Join(e.work, "targets", name)
	img := root + ".img"
	if e.mounted[root] {
		if out, err := exec.Command("umount", root).CombinedOutput(); err != nil {
			b.Fatalf("umount %s: %v: %s", root, err, out)
		}
		delete(e.mounted, root)
	}
	if err := nar.RemoveAll(root); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	if e.plainRoots {
		return root
	}
	script := fmt.Sprintf("rm -f %[1]s && truncate -s 2G %[1]s && mkfs.ext4 -q -F %[1]s && mount -o loop %[1]s %[2]s && sync", img, root)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		b.Logf("no fresh ext4 for the targets (%v: %s); using plain directories", err, strings.TrimSpace(string(out)))
		e.plainRoots = true
		return root
	}
	if e.mounted == nil {
		e.mounted = map[string]bool{}
		b.Cleanup(func() {
			for r := range e.mounted {
				exec.Command("umount", r).Run()
			}
		})
	}
	e.mounted[root] = true
	return root
}

// viaSend runs `via send`. With NIXOS_VIA_BENCH_PROFILE=DIR, the sender and
// each agent write CPU profiles into DIR (send-*.prof, agent-*.prof).
func (e *env) viaSend(b *testing.B, name, root string, jobs int, extra ...string) result {
	agent, sendEnv := e.via, []string(nil)
	if dir := os.Getenv("NIXOS_VIA_BENCH_PROFILE"); dir != "" {
		agent = fmt.Sprintf("VIA_CPUPROFILE=%s/agent-%d-$$.prof %s", dir, jobs, e.via)
		sendEnv = append(sendEnv, fmt.Sprintf("VIA_CPUPROFILE=%s/send-%d-%d.prof", dir, jobs, time.Now().UnixNano()))
	}
	r := e.run(b, name, fmt.Sprintf("%s send --store-root %s --paths %s --port %d --key %s --known-hosts %s --root %s --agent '%s' --jobs %d %s",
		e.via, e.store, e.pathsFile, e.proxy.Port, e.server.ClientKey, e.knownHosts, root, agent, jobs, strings.Join(extra, " ")), sendEnv...)
	var stats struct {
		Sent        int
		Compression string
	}
	lines := strings.Split(strings.TrimSpace(string(r.out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &stats); err != nil {
		b.Fatalf("%s: via send printed %q: %v", name, r.out, err)
	}
	r.compression = "–"
	if stats.Sent > 0 {
		r.compression = "zstd " + stats.Compression
	}
	return r
}

// checkCopy verifies a sample of paths under root by NAR hash.
func (e *env) checkCopy(b *testing.B, name, root string) {
	b.Helper()
	for i := 0; i < len(e.paths); i += len(e.paths)/20 + 1 {
		want, err1 := nar.HashPath(filepath.Join(e.store, e.paths[i]))
		got, err2 := nar.HashPath(filepath.Join(root, e.paths[i]))
		if err1 != nil || err2 != nil || want != got {
			b.Fatalf("%s: %s differs on the target (%v, %v)", name, e.paths[i], err1, err2)
		}
	}
}

type method struct {
	name string
	run  func(b *testing.B, round int) result
}

func BenchmarkCopy(b *testing.B) {
	e := setup(b)
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("NIXOS_VIA_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	via := func(jobs int) method {
		name := fmt.Sprintf("nixos-via, --copy-jobs %d", jobs)
		return method{name, func(b *testing.B, round int) result {
			root := e.freshRoot(b, fmt.Sprintf("via%d", jobs))
			r := e.viaSend(b, name, root, jobs)
			e.checkCopy(b, name, root)
			return r
		}}
	}
	methods := []method{
		via(1), via(2),
		{"nixos-via re-run, all present", func(b *testing.B, round int) result {
			return e.viaSend(b, "re-run", filepath.Join(e.work, "targets", "via1"), 1)
		}},
		{"nix copy ssh://", func(b *testing.B, round int) result {
			root := e.freshRoot(b, "nixcopy")
			r := e.run(b, "nix copy", fmt.Sprintf(
				"nix --extra-experimental-features nix-command copy --no-check-sigs --from %s --to 'ssh://root@127.0.0.1?remote-store=local?root=%s' $(cat %s)",
				e.store, root, e.pathsFile), "NIX_SSHOPTS="+e.sshOpts())
			e.checkCopy(b, "nix copy", root)
			r.compression = "none"
			return r
		}},
		{"tar \\| zstd -1 -T2 \\| ssh", func(b *testing.B, round int) result {
			root := e.freshRoot(b, "tar")
			r := e.run(b, "tar pipe", fmt.Sprintf(
				"cd %s && sed 's|^/||' %s | tar -cf - -T - | zstd -q -1 -T2 | ssh %s root@127.0.0.1 'zstd -q -d | tar -C %s -xf -'",
				e.store, e.pathsFile, e.sshOpts(), root))
			e.checkCopy(b, "tar pipe", root)
			r.compression = "zstd -1"
			return r
		}},
	}
	if os.Getenv("NIXOS_VIA_BENCH_QUICK") != "" {
		// For quick comparisons while tuning: --copy-jobs 2 and the tar pipe.
		methods = []method{methods[1], methods[4]}
	}
	b.ResetTimer()
	// Rounds interleave the methods, so a burst of load elsewhere on the
	// machine hits them alike; each method's best round is reported.
	all := make([][]result, len(methods))
	for round := 0; round < rounds; round++ {
		for i, m := range methods {
			all[i] = append(all[i], m.run(b, round))
		}
	}
	b.StopTimer()

	best := make([]result, len(methods))
	median := make([]time.Duration, len(methods))
	for i, rs := range all {
		sort.Slice(rs, func(a, c int) bool { return rs[a].wall < rs[c].wall })
		best[i] = rs[0]
		best[i].name = methods[i].name
		median[i] = rs[len(rs)/2].wall
	}
	ratio := func(name string, r result) string {
		for i, m := range methods {
			if strings.HasPrefix(m.name, name) {
				return fmt.Sprintf("%.2f×", best[i].wall.Seconds()/r.wall.Seconds())
			}
		}
		return "–"
	}
	var sb strings.Builder
	link := "loopback speed"
	if e.link != "" {
		link = e.link
	}
	fmt.Fprintf(&sb, "\n%d paths, %.0f MB of NAR (MB = 10^6 bytes), %s; best of %d rounds (median in brackets)\n\n", len(e.paths), float64(e.narBytes)/1e6, link, rounds)
	fmt.Fprintln(&sb, "| method | wall time | MB/s (NAR) | on the wire | compression | peak RSS (client) | CPU client + server | CPU stolen | speed vs nix copy | speed vs tar pipe |")
	fmt.Fprintln(&sb, "|---|---|---|---|---|---|---|---|---|---|")
	for i, r := range best {
		mbps := fmt.Sprintf("%.0f", float64(e.narBytes)/1e6/r.wall.Seconds())
		if strings.Contains(r.name, "re-run") {
			mbps = "–"
		}
		fmt.Fprintf(&sb, "| %s | %.2f s (%.2f s) | %s | %.1f MB | %s | %.0f MB | %.1f + %.1f s | %.0f %% | %s | %s |\n", r.name, r.wall.Seconds(), median[i].Seconds(), mbps,
			float64(r.wire)/1e6, r.compression, float64(r.maxRSSKB)/1024, r.clientCPU.Seconds(), r.serverCPU.Seconds(), 100*r.stolen,
			ratio("nix copy", r), ratio("tar", r))
	}
	fmt.Print(sb.String())
}
