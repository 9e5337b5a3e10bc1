package kexec

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

type tarEntry struct {
	name string
	mode int64
	data []byte
	link string
}

// makeTarball writes a gzip tarball with entries and returns its bytes.
func makeTarball(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), Typeflag: tar.TypeReg}
		if e.link != "" {
			h = &tar.Header{Name: e.name, Linkname: e.link, Typeflag: tar.TypeSymlink, Mode: 0o777}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// gzipped compresses data (a stand-in initrd whose unpacked size is known).
func gzipped(data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

func installerEntries(run string, initrdUnpacked int) []tarEntry {
	return []tarEntry{
		{name: "kexec/run", mode: 0o755, data: []byte(run)},
		{name: "kexec/bzImage", mode: 0o644, data: bytes.Repeat([]byte{1}, 4096)},
		{name: "kexec/initrd", mode: 0o644, data: gzipped(bytes.Repeat([]byte("0707"), initrdUnpacked/4))},
	}
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "installer.tar.gz")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFetchFileMeasuresTheInitrd(t *testing.T) {
	file := writeFile(t, makeTarball(t, installerEntries("#!/bin/sh\n", 1<<20)))
	tb, err := Fetch(context.Background(), file, t.TempDir(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tb.InitrdUnpacked != 1<<20 || tb.InitrdEstimated {
		t.Errorf("InitrdUnpacked = %d (estimated %v), want %d measured", tb.InitrdUnpacked, tb.InitrdEstimated, 1<<20)
	}
	if tb.KernelBytes != 4096 {
		t.Errorf("KernelBytes = %d, want 4096", tb.KernelBytes)
	}
	st, err := os.Stat(filepath.Join(tb.Dir, "kexec", "run"))
	if err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("kexec/run not unpacked executable: %v %v", st, err)
	}
}

// xzed compresses data with the xz command (as nixos-images compresses its
// initrd), or skips the test without one.
func xzed(t *testing.T, data []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("no xz here")
	}
	cmd := exec.Command("xz", "-c", "--check=crc32")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	return out
}

// TestFetchMeasuresAnXZInitrd: the official images' initrd is xz; it is
// measured with the local xz, not estimated.
func TestFetchMeasuresAnXZInitrd(t *testing.T) {
	entries := installerEntries("#!/bin/sh\n", 0)
	entries[2].data = xzed(t, bytes.Repeat([]byte("0707 squashfs"), 100000))
	tb, err := Fetch(context.Background(), writeFile(t, makeTarball(t, entries)), t.TempDir(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(13 * 100000); tb.InitrdUnpacked != want || tb.InitrdEstimated {
		t.Errorf("InitrdUnpacked = %d (estimated %v), want %d measured", tb.InitrdUnpacked, tb.InitrdEstimated, want)
	}
}

func TestFetchRefusals(t *testing.T) {
	good := makeTarball(t, installerEntries("#!/bin/sh\n", 4096))
	sum := sha256.Sum256(good)
	tests := []struct {
		name    string
		data    []byte
		sha     string
		wantErr string
	}{
		{"wrong sha256", good, strings.Repeat("0", 64), "sha256 is " + hex.EncodeToString(sum[:])},
		{"not an installer", makeTarball(t, []tarEntry{{name: "nixos/bzImage", mode: 0o644, data: []byte("x")}}), "", "lacks kexec/run, kexec/bzImage, kexec/initrd"},
		{"path traversal", makeTarball(t, []tarEntry{{name: "../evil", mode: 0o644, data: []byte("x")}}), "", "leaves the archive"},
		{"symlink out", makeTarball(t, []tarEntry{{name: "kexec/x", link: "../../etc/passwd"}}), "", "leaves the archive"},
		{"not a tarball", []byte("hello, this is not a tar file at all; it is much longer than one block? no."), "", "installer tarball"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Fetch(context.Background(), writeFile(t, tc.data), t.TempDir(), tc.sha, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Fetch err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	// The right sha256 is accepted, in any case.
	if _, err := Fetch(context.Background(), writeFile(t, good), t.TempDir(), strings.ToUpper(hex.EncodeToString(sum[:])), nil, nil); err != nil {
		t.Errorf("right sha256 refused: %v", err)
	}
}

func TestFetchURLIsCachedByURL(t *testing.T) {
	data := makeTarball(t, installerEntries("#!/bin/sh\n", 4096))
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/release/installer.tar.gz" {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	defer srv.Close()
	cache := t.TempDir()
	url := srv.URL + "/release/installer.tar.gz"
	sum := sha256.Sum256(data)
	for i := 0; i < 2; i++ {
		tb, err := Fetch(context.Background(), url, cache, hex.EncodeToString(sum[:]), srv.Client(), nil)
		if err != nil {
			t.Fatalf("Fetch #%d: %v", i+1, err)
		}
		if tb.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("sha256 = %s", tb.SHA256)
		}
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("server hit %d times for two fetches, want 1 (cached)", got)
	}
	// A corrupt cached copy is fetched again when a digest is pinned.
	matches, _ := filepath.Glob(filepath.Join(cache, "downloads", "*"))
	if len(matches) != 1 {
		t.Fatalf("cache has %v", matches)
	}
	os.WriteFile(matches[0], []byte("corrupt"), 0o644)
	if _, err := Fetch(context.Background(), url, cache, hex.EncodeToString(sum[:]), srv.Client(), nil); err != nil {
		t.Fatalf("Fetch after corruption: %v", err)
	}
	if got := hits.Load(); got != 2 {
		t.Errorf("server hit %d times, want 2 (refetched the corrupt copy)", got)
	}
	_, err := Fetch(context.Background(), srv.URL+"/missing.tar.gz", cache, "", srv.Client(), nil)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing URL: err = %v, want a 404", err)
	}
}

func linuxFacts() *target.Facts {
	return &target.Facts{OS: "Linux", Arch: "x86_64", MemTotalKiB: 1 << 20, MemAvailKiB: 900 << 10, Container: "none",
		Virt: "kvm", IsRoot: true, Escalation: "none", SecureBoot: "unknown", User: "root"}
}

func TestPreflight(t *testing.T) {
	tb := &Tarball{KernelBytes: 10 << 20, InitrdBytes: 30 << 20, InitrdUnpacked: 90 << 20,
		Files: map[string]int64{"kexec/bzImage": 10 << 20, "kexec/initrd": 30 << 20, "kexec/run": 4096, "kexec/kexec": 1 << 20}}
	need := Needs(tb, false)
	if want := int64(3*10<<20 + 30<<20 + 90<<20 + WorkingMargin); need.NewTotal != want {
		t.Errorf("NewTotal = %d, want %d", need.NewTotal, want)
	}
	if want := int64(10<<20 + 30<<20 + LoadMargin); need.OldAvailable != want {
		t.Errorf("OldAvailable = %d, want %d", need.OldAvailable, want)
	}
	if inRAM := Needs(tb, true); inRAM.OldAvailable <= need.OldAvailable {
		t.Errorf("files on tmpfs do not raise the need: %d vs %d", inRAM.OldAvailable, need.OldAvailable)
	}
	tests := []struct {
		name      string
		mod       func(*target.Facts, *PreflightInput)
		wantCheck string // "" = pass
		wantMsg   string
	}{
		{"ok", func(*target.Facts, *PreflightInput) {}, "", ""},
		{"not linux", func(f *target.Facts, _ *PreflightInput) { f.OS = "FreeBSD" }, "os", "FreeBSD"},
		{"riscv without --kexec", func(f *target.Facts, _ *PreflightInput) { f.Arch = "riscv64" }, "arch", "--kexec"},
		{"riscv with --kexec", func(f *target.Facts, in *PreflightInput) { f.Arch = "riscv64"; in.CustomImage = true }, "", ""},
		{"container", func(f *target.Facts, _ *PreflightInput) { f.Container = "lxc" }, "container", "rescue"},
		{"kexec disabled", func(f *target.Facts, _ *PreflightInput) { f.KexecDisabled = true }, "kexec-disabled", "kexec_load_disabled"},
		{"lockdown", func(f *target.Facts, _ *PreflightInput) { f.Lockdown = "integrity"; f.SecureBoot = "enabled" }, "lockdown", "Secure Boot on"},
		{"no root", func(f *target.Facts, _ *PreflightInput) { f.IsRoot = false; f.Escalation = ""; f.User = "bob" }, "root", "bob"},
		{"too little available", func(f *target.Facts, _ *PreflightInput) { f.MemAvailKiB = 50 << 10 }, "memory", "50 MiB available"},
		{"too little total", func(f *target.Facts, _ *PreflightInput) { f.MemTotalKiB = 200 << 10 }, "memory", fmt.Sprintf("needs %d MiB once booted", need.NewTotal>>20)},
		{"no disk space", func(_ *target.Facts, in *PreflightInput) { in.WorkDirFree = 5 << 20 }, "disk-space", "5 MiB free"},
		{"staged bytes count as free space", func(_ *target.Facts, in *PreflightInput) { in.WorkDirFree = 5 << 20; in.Staged = 40 << 20 }, "", ""},
		{"staged bytes not enough", func(_ *target.Facts, in *PreflightInput) { in.WorkDirFree = 5 << 20; in.Staged = 20 << 20 }, "disk-space", "25 MiB free"},
		{"staged on tmpfs count as available", func(f *target.Facts, in *PreflightInput) {
			f.MemAvailKiB = (Needs(tb, true).OldAvailable - 30<<20 + 1<<20) >> 10
			in.WorkDirRAM, in.Staged = true, 30<<20
		}, "", ""},
		{"staged on disk do not count as available", func(f *target.Facts, in *PreflightInput) {
			f.MemAvailKiB = (need.OldAvailable - 30<<20) >> 10
			in.Staged = 30 << 20
		}, "memory", "available"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := linuxFacts()
			in := PreflightInput{Facts: f, Tarball: tb, WorkDirFree: -1}
			tc.mod(f, &in)
			_, err := Preflight(in)
			if tc.wantCheck == "" {
				if err != nil {
					t.Fatalf("Preflight = %v, want ok", err)
				}
				return
			}
			var r *phase.Refusal
			if !errors.As(err, &r) {
				t.Fatalf("Preflight = %v, want a *Refusal", err)
			}
			if r.Check != tc.wantCheck || !strings.Contains(r.Msg, tc.wantMsg) {
				t.Errorf("refusal %s: %q, want check %s mentioning %q", r.Check, r.Msg, tc.wantCheck, tc.wantMsg)
			}
		})
	}
	// An estimated unpacked initrd: refused only below the least it can
	// need (unpacked = compressed), warned between that and the estimate.
	est := *tb
	est.InitrdUnpacked, est.InitrdEstimated = 4*est.InitrdBytes, true
	low, high := Needs(&Tarball{KernelBytes: tb.KernelBytes, InitrdBytes: tb.InitrdBytes, InitrdUnpacked: tb.InitrdBytes, Files: tb.Files}, false), Needs(&est, false)
	for _, tc := range []struct {
		name     string
		total    int64
		wantErr  string
		wantWarn string
	}{
		{"below the least", low.NewTotal - 1<<20, "needs at least", ""},
		{"between", (low.NewTotal + high.NewTotal) / 2, "", "could not be measured"},
		{"above the estimate", high.NewTotal + 1<<20, "", ""},
	} {
		f := linuxFacts()
		f.MemTotalKiB = tc.total >> 10
		warn, err := Preflight(PreflightInput{Facts: f, Tarball: &est, WorkDirFree: -1})
		if gotErr := fmt.Sprint(err); (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(gotErr, tc.wantErr) {
			t.Errorf("estimated, %s: err %v, want %q", tc.name, err, tc.wantErr)
		}
		if got := strings.Join(warn, "\n"); (tc.wantWarn == "") != (got == "") || !strings.Contains(got, tc.wantWarn) {
			t.Errorf("estimated, %s: warnings %q, want %q", tc.name, got, tc.wantWarn)
		}
	}
	warn, err := Preflight(PreflightInput{Facts: func() *target.Facts { f := linuxFacts(); f.Virt = "xen"; return f }(), Tarball: tb, WorkDirFree: -1})
	if err != nil || len(warn) == 0 || !strings.Contains(warn[0], "Xen") {
		t.Errorf("xen: warnings %q err %v, want a Xen warning", warn, err)
	}
}

// --- against a real sshd on loopback ---

func connectTo(t *testing.T, addr string, s *sshtest.Server) *target.Conn {
	t.Helper()
	o := target.Options{Destination: "root@" + addr, IdentityFiles: []string{s.ClientKey}, SSHConfigFile: "none",
		KnownHostsFiles: []string{filepath.Join(t.TempDir(), "kh")}, ConnectTimeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := target.Dial(ctx, o, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func uploadFake(t *testing.T, c *target.Conn, run string) WorkDir {
	t.Helper()
	ctx := context.Background()
	tb, err := Fetch(ctx, writeFile(t, makeTarball(t, installerEntries(run, 4096))), t.TempDir(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := PrepareWorkDir(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(w.Path) })
	if w.Free <= 0 || w.FSType == "" {
		t.Errorf("work dir %+v: want free space and a filesystem type", w)
	}
	var last int64
	err = Upload(ctx, c, tb, w, event.Func(func(e event.Event) { last = e.Done }))
	if err != nil {
		t.Fatal(err)
	}
	if want := tb.Files["kexec/run"] + tb.Files["kexec/bzImage"] + tb.Files["kexec/initrd"]; last != want {
		t.Errorf("upload progress ended at %d, want %d", last, want)
	}
	return w
}

func TestRunWithoutMarkerFailsWithItsOutput(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := connectTo(t, s.Addr, s)
	w := uploadFake(t, c, "#!/bin/sh\necho loading the installer\necho 'kexec_load failed: Operation not permitted' >&2\nexit 0\n")
	_, err := RunScript(context.Background(), c, w, "--no-sync")
	var ke *Error
	if !errors.As(err, &ke) || ke.Step != "run" {
		t.Fatalf("RunScript = %v, want a run *Error", err)
	}
	for _, want := range []string{Marker, "kexec_load failed: Operation not permitted", "loading the installer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	log, _ := os.ReadFile(filepath.Join(w.Path, "run.log"))
	if !strings.Contains(string(log), "loading the installer") {
		t.Errorf("run.log on the host = %q", log)
	}
	if !strings.Contains(err.Error(), filepath.Join(w.Path, "run.log")) {
		t.Errorf("error does not say where run.log is:\n%v", err)
	}
	// The installer's files (hundreds of MiB, maybe in RAM) are gone.
	if _, err := os.Stat(filepath.Join(w.Path, "kexec")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/kexec after a failed run: %v, want it removed", w.Path, err)
	}
}

func TestRunFailingExitStatusAndExtraFlags(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := connectTo(t, s.Addr, s)
	w := uploadFake(t, c, "#!/bin/sh\necho \"args: $*\"\necho \"tmpdir: $TMPDIR\"\nexit 7\n")
	_, err := RunScript(context.Background(), c, w, "--no-sync --x 'y z'")
	if err == nil || !strings.Contains(err.Error(), "exit 7") {
		t.Fatalf("RunScript = %v, want exit 7", err)
	}
	if !strings.Contains(err.Error(), "args: --kexec-extra-flags --no-sync --x 'y z'") || !strings.Contains(err.Error(), "tmpdir: "+w.Path) {
		t.Errorf("run did not get its flags as one argument and TMPDIR:\n%v", err)
	}
	w2 := uploadFake(t, c, "#!/bin/sh\necho \""+Marker+"\"\n")
	out, err := RunScript(context.Background(), c, w2, "")
	if err != nil || !strings.Contains(out, Marker) {
		t.Errorf("RunScript with the marker = %q, %v; want success", out, err)
	}
}

// TestRunMarkerThenLostConnection: a run that printed the marker and then
// lost the connection before its exit status (the host went down early) is
// a success, as the marker says the new kernel is loaded; one that lost it
// without the marker is not.
func TestRunMarkerThenLostConnection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		marker bool
	}{{"marker", true}, {"no marker", false}} {
		t.Run(tc.name, func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{})
			proxy := sshtest.StartProxy(t, s.Addr)
			c := connectTo(t, proxy.Addr, s)
			script := "#!/bin/sh\necho loading\n"
			if tc.marker {
				script += "echo \"" + Marker + "\"\n"
			}
			w := uploadFake(t, c, script+"sleep 20\n")
			go func() {
				time.Sleep(2 * time.Second)
				proxy.Cut()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := RunScript(ctx, c, w, "")
			if tc.marker && (err != nil || !strings.Contains(out, Marker)) {
				t.Errorf("RunScript = %q, %v; want success after the marker", out, err)
			}
			if !tc.marker && err == nil {
				t.Errorf("RunScript = %q, nil; want a failure without the marker", out)
			}
		})
	}
}

func TestReconnectRefusesAnotherHostKey(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	proxy := sshtest.StartProxy(t, s.Addr)
	c := connectTo(t, proxy.Addr, s)
	oldFP := fingerprint(c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Second)
		// The host comes back with another key; its sshd is replaced
		// before the old connections drop, so no reconnect can reach the
		// old one in between (a real kexec leaves nothing of it).
		s.ReplaceHostKey(t)
		proxy.Cut()
	}()
	_, _, err := Reconnect(context.Background(), c, Options{DownTimeout: 20 * time.Second, UpTimeout: 20 * time.Second, Interval: 300 * time.Millisecond, Home: t.TempDir(), PostKexecPort: proxy.Port})
	<-done
	var mm *target.HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Reconnect = %v, want a host key mismatch", err)
	}
	for _, want := range []string{oldFP, mm.Got, "the host before kexec"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestReconnectRequiresAnInstaller(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	proxy := sshtest.StartProxy(t, s.Addr)
	c := connectTo(t, proxy.Addr, s)
	go func() {
		time.Sleep(time.Second)
		proxy.Cut() // the same host comes back: it never kexec'd
	}()
	_, _, err := Reconnect(context.Background(), c, Options{DownTimeout: 20 * time.Second, UpTimeout: 20 * time.Second, Interval: 300 * time.Millisecond, Home: t.TempDir(), PostKexecPort: proxy.Port})
	var ke *Error
	if !errors.As(err, &ke) || ke.Step != "verify" || !strings.Contains(err.Error(), "not an installer") {
		t.Fatalf("Reconnect = %v, want a verify error saying it is not an installer", err)
	}
}

func TestReconnectDeadlineSaysWhatEachPortShowed(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	proxy := sshtest.StartProxy(t, s.Addr)
	c := connectTo(t, proxy.Addr, s)
	go func() {
		time.Sleep(500 * time.Millisecond)
		proxy.Close() // gone, and nothing listens there any more
	}()
	start := time.Now()
	_, _, err := Reconnect(context.Background(), c, Options{DownTimeout: 20 * time.Second, UpTimeout: 3 * time.Second, Interval: 300 * time.Millisecond, Home: t.TempDir(), PostKexecPort: proxy.Port})
	var we *target.WaitError
	if !errors.As(err, &we) {
		t.Fatalf("Reconnect = %v, want a WaitError", err)
	}
	for _, want := range []string{fmt.Sprintf("port %d: connection refused", proxy.Port)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s with a 3 s deadline", d)
	}
}

func fingerprint(c *target.Conn) string { return ssh.FingerprintSHA256(c.HostKey()) }

// TestRemoveWorkDirAfterInterrupt: Ctrl-C cancels the run's context, and
// the work directory (hundreds of MiB, maybe in RAM) must still go.
func TestRemoveWorkDirAfterInterrupt(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := connectTo(t, s.Addr, s)
	w := uploadFake(t, c, "#!/bin/sh\nexit 0\n")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := RemoveWorkDir(ctx, c, w); err != nil {
		t.Fatalf("RemoveWorkDir after the context was cancelled = %v, want nil", err)
	}
	if _, err := os.Stat(w.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after an interrupted run: %v, want it removed", w.Path, err)
	}
}

// TestFetchNeverWritesThroughASymlink: each symlink of this tarball points
// inside it when read where its name says, but x -> . makes x/x/x/y the
// real y, so y/l -> ../../../.. is four levels above the unpack directory:
// the file written through l must not land outside the cache.
func TestFetchNeverWritesThroughASymlink(t *testing.T) {
	base := t.TempDir()
	data := makeTarball(t, append(installerEntries("#!/bin/sh\n", 4096),
		tarEntry{name: "x", link: "."},
		tarEntry{name: "x/x/x/y/f", mode: 0o644, data: []byte("a file")},
		tarEntry{name: "x/x/x/y/l", link: "../../../.."},
		tarEntry{name: "x/x/x/y/l/evil", mode: 0o644, data: []byte("outside")},
	))
	_, err := Fetch(context.Background(), writeFile(t, data), filepath.Join(base, "cache"), "", nil, nil)
	if _, statErr := os.Stat(filepath.Join(base, "evil")); statErr == nil {
		t.Fatalf("the tarball wrote %s, outside the cache (Fetch = %v)", filepath.Join(base, "evil"), err)
	}
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("Fetch = %v, want a refusal naming the symlink the entry goes through", err)
	}
}
