package kexec

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

const (
	bigKernel = 1 << 20
	bigInitrd = 8 << 20
)

// bigTarball is an installer with incompressible files (an 8 MiB initrd),
// different in every test so that tests never share a staging directory.
func bigTarball(t *testing.T) *Tarball {
	t.Helper()
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	entries := []tarEntry{
		{name: "kexec/run", mode: 0o755, data: []byte("#!/bin/sh\n# " + t.Name() + "\n")},
		{name: "kexec/bzImage", mode: 0o644, data: random(bigKernel)},
		{name: "kexec/initrd", mode: 0o600, data: random(bigInitrd)},
	}
	tb, err := Fetch(context.Background(), writeFile(t, makeTarball(t, entries)), t.TempDir(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// eventLog keeps a run's events.
type eventLog struct {
	mu     sync.Mutex
	events []event.Event
	onEach func(event.Event)
}

func (l *eventLog) Emit(e event.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	if l.onEach != nil {
		l.onEach(e)
	}
}

// sent is the byte count of the last progress event: what the upload sent.
func (l *eventLog) sent() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, e := range l.events {
		if e.Kind == event.Progress {
			n = e.Done
		}
	}
	return n
}

// said returns the first message of kind that contains s.
func (l *eventLog) said(kind event.Kind, s string) (event.Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == kind && strings.Contains(e.Msg, s) {
			return e, true
		}
	}
	return event.Event{}, false
}

func (l *eventLog) messages() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s []string
	for _, e := range l.events {
		if e.Kind != event.Progress {
			s = append(s, string(e.Kind)+": "+e.Msg)
		}
	}
	return strings.Join(s, "\n")
}

func prepare(t *testing.T, c *target.Conn, tb *Tarball) (WorkDir, string) {
	t.Helper()
	w, err := PrepareWorkDir(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	staging := StagingDir(w, tb)
	t.Cleanup(func() { os.RemoveAll(w.Path); os.RemoveAll(staging) })
	return w, staging
}

// checkInstalled asserts that w holds every file of tb, equal and with its
// mode, and that the staging directory is gone.
func checkInstalled(t *testing.T, tb *Tarball, w WorkDir, staging string) {
	t.Helper()
	for name := range tb.Files {
		want, _ := os.ReadFile(filepath.Join(tb.Dir, name))
		got, err := os.ReadFile(filepath.Join(w.Path, name))
		if err != nil {
			t.Errorf("%s in the work dir: %v", name, err)
			continue
		}
		if sha256.Sum256(got) != sha256.Sum256(want) {
			t.Errorf("%s in the work dir: %d bytes with sha256 %x, want %d bytes with %x", name, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
		}
		lst, _ := os.Stat(filepath.Join(tb.Dir, name))
		if st, err := os.Stat(filepath.Join(w.Path, name)); err == nil && st.Mode().Perm() != lst.Mode().Perm() {
			t.Errorf("%s mode = %o, want %o", name, st.Mode().Perm(), lst.Mode().Perm())
		}
	}
	if _, err := os.Stat(staging); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging dir %s after a complete upload: %v, want it gone", staging, err)
	}
}

// waitClosed waits until no process on this machine (the loopback host)
// has file open: the sshd session of a cut connection may still be
// writing what reached it.
func waitClosed(t *testing.T, file string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
		open := false
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && l == file {
				open = true
				break
			}
		}
		if !open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still open on the host 20 s after the cut", file)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wireBytes closes c and returns what the proxy carried to the host.
func wireBytes(t *testing.T, c *target.Conn, p *sshtest.Proxy) int64 {
	t.Helper()
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for p.BytesToTarget() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the proxy counted no bytes 10 s after the connection closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p.BytesToTarget()
}

var transports = []struct {
	name   string
	noSFTP bool
}{{"sftp", false}, {"cat-fallback", true}}

func TestUploadCutThenRerunSendsOnlyTheRest(t *testing.T) {
	for _, via := range transports {
		t.Run(via.name, func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{NoSFTP: via.noSFTP})
			tb := bigTarball(t)
			ctx := context.Background()

			// First run: the connection is cut in the middle of the initrd.
			proxy := sshtest.StartProxy(t, s.Addr)
			c1 := connectTo(t, proxy.Addr, s)
			w1, staging := prepare(t, c1, tb)
			var once sync.Once
			first := &eventLog{onEach: func(e event.Event) {
				if e.Kind == event.Progress && e.Done >= bigKernel+bigInitrd*5/8 {
					once.Do(proxy.Cut)
				}
			}}
			err := Upload(ctx, c1, tb, w1, first)
			var ke *Error
			if !errors.As(err, &ke) || ke.Step != "upload" || !strings.Contains(err.Error(), staging) || !strings.Contains(err.Error(), "run again") {
				t.Fatalf("cut upload: err = %v, want an upload *Error naming %s and saying to run again", err, staging)
			}
			if left, _ := os.ReadDir(w1.Path); len(left) != 0 {
				t.Errorf("work dir after the cut holds %v, want nothing (only complete files ever go there)", left)
			}
			part := filepath.Join(staging, "kexec", "initrd.part")
			waitClosed(t, part)
			st, err := os.Stat(part)
			if err != nil {
				t.Fatalf("no partial initrd kept after the cut: %v", err)
			}
			prefix := st.Size()
			if prefix < 1<<20 || prefix >= bigInitrd {
				t.Fatalf("the cut left %d bytes of the initrd; the test needs at least 1 MiB and less than all of it", prefix)
			}

			// Second run, through a new connection and a new work dir.
			p2 := sshtest.StartProxy(t, s.Addr)
			c2 := connectTo(t, p2.Addr, s)
			w2, staging2 := prepare(t, c2, tb)
			if w2.Path == w1.Path || staging2 != staging {
				t.Fatalf("second run: work dir %s (first %s), staging %s (first %s); want a fresh work dir and the same staging dir", w2.Path, w1.Path, staging2, staging)
			}
			second := &eventLog{}
			if err := Upload(ctx, c2, tb, w2, second); err != nil {
				t.Fatalf("second upload: %v\nevents:\n%s", err, second.messages())
			}
			missing := bigInitrd - prefix + tb.Files["kexec/run"]
			if got := second.sent(); got != missing {
				t.Errorf("second run sent %d bytes by its progress, want %d (the initrd from %d on, and run)", got, missing, prefix)
			}
			if _, ok := second.said(event.Info, fmt.Sprintf("resuming kexec/initrd at %s", event.Bytes(prefix))); !ok {
				t.Errorf("no event says the initrd resumes at %s:\n%s", event.Bytes(prefix), second.messages())
			}
			if _, ok := second.said(event.Info, "kexec/bzImage is on the host already"); !ok {
				t.Errorf("no event says bzImage was complete:\n%s", second.messages())
			}
			checkInstalled(t, tb, w2, staging)
			// The partial file was appended to and renamed, never copied.
			if got, err := os.Stat(filepath.Join(w2.Path, "kexec", "initrd")); err == nil {
				if a, b := st.Sys().(*syscall.Stat_t).Ino, got.Sys().(*syscall.Stat_t).Ino; a != b {
					t.Errorf("initrd in the work dir is inode %d, the partial was %d: want the same file moved", b, a)
				}
			}
			// On the wire: the missing bytes plus SSH framing, not the whole initrd again.
			wire := wireBytes(t, c2, p2)
			t.Logf("the cut left %d of %d initrd bytes; the re-run put %d bytes on the wire for %d missing", prefix, bigInitrd, wire, missing)
			if wire < missing || wire > missing+256<<10 {
				t.Errorf("second run put %d bytes on the wire, want between %d and %d", wire, missing, missing+256<<10)
			}
		})
	}
}

func TestUploadChecksWhatAnEarlierRunLeft(t *testing.T) {
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[1000] ^= 0xff; return b }
	tests := []struct {
		name     string
		part     func(initrd []byte) []byte
		wantSent func(tb *Tarball) int64
		wantKind event.Kind
		wantMsg  string
	}{
		{"matching start", func(b []byte) []byte { return b[:3<<20] },
			func(tb *Tarball) int64 { return bigKernel + bigInitrd - 3<<20 + tb.Files["kexec/run"] },
			event.Info, "resuming kexec/initrd at 3.0 MiB of 8.0 MiB"},
		{"a changed byte", func(b []byte) []byte { return flip(b[:3<<20]) },
			func(tb *Tarball) int64 { return bigKernel + bigInitrd + tb.Files["kexec/run"] },
			event.Warn, "the 3.0 MiB of kexec/initrd an earlier run left on the host do not match the file: sending it again from zero"},
		{"longer than the file", func(b []byte) []byte { return append(bytes.Clone(b), 'x') },
			func(tb *Tarball) int64 { return bigKernel + bigInitrd + tb.Files["kexec/run"] },
			event.Warn, "which is only 8.0 MiB: sending it again from zero"},
		{"complete", func(b []byte) []byte { return b },
			func(tb *Tarball) int64 { return bigKernel + tb.Files["kexec/run"] },
			event.Info, "kexec/initrd is on the host already"},
		{"complete with a changed byte", flip,
			func(tb *Tarball) int64 { return bigKernel + bigInitrd + tb.Files["kexec/run"] },
			event.Warn, "do not match the file"},
	}
	for _, via := range transports {
		t.Run(via.name, func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{NoSFTP: via.noSFTP})
			c := connectTo(t, s.Addr, s)
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tb := bigTarball(t)
					w, staging := prepare(t, c, tb)
					initrd, _ := os.ReadFile(filepath.Join(tb.Dir, "kexec", "initrd"))
					os.MkdirAll(filepath.Join(staging, "kexec"), 0o700)
					if err := os.WriteFile(filepath.Join(staging, "kexec", "initrd.part"), tc.part(initrd), 0o600); err != nil {
						t.Fatal(err)
					}
					log := &eventLog{}
					if err := Upload(context.Background(), c, tb, w, log); err != nil {
						t.Fatalf("Upload: %v\nevents:\n%s", err, log.messages())
					}
					if got, want := log.sent(), tc.wantSent(tb); got != want {
						t.Errorf("sent %d bytes, want %d", got, want)
					}
					if _, ok := log.said(tc.wantKind, tc.wantMsg); !ok {
						t.Errorf("no %s event saying %q:\n%s", tc.wantKind, tc.wantMsg, log.messages())
					}
					checkInstalled(t, tb, w, staging)
				})
			}
		})
	}
}

// A host without sha256sum cannot check what an earlier run left: the file
// starts over, and the upload is checked by size.
func TestUploadWithoutSHA256SumStartsOver(t *testing.T) {
	sshtest.Need(t)
	bin := t.TempDir()
	os.Chmod(bin, 0o755)
	for _, tool := range []string{"sh", "cat", "wc", "mkdir", "chmod", "mv", "rm", "cut", "mktemp", "df", "awk", "bash"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s here", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	for _, via := range transports {
		t.Run(via.name, func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{NoSFTP: via.noSFTP, ExtraConfig: "SetEnv PATH=" + bin + "\n"})
			c := connectTo(t, s.Addr, s)
			if out, err := c.Output(context.Background(), "command -v sha256sum || echo none", nil); err != nil || strings.TrimSpace(string(out)) != "none" {
				t.Fatalf("the test host still finds sha256sum: %q %v", out, err)
			}
			tb := bigTarball(t)
			w, staging := prepare(t, c, tb)
			initrd, _ := os.ReadFile(filepath.Join(tb.Dir, "kexec", "initrd"))
			os.MkdirAll(filepath.Join(staging, "kexec"), 0o700)
			os.WriteFile(filepath.Join(staging, "kexec", "initrd.part"), initrd[:3<<20], 0o600)
			log := &eventLog{}
			if err := Upload(context.Background(), c, tb, w, log); err != nil {
				t.Fatalf("Upload: %v\nevents:\n%s", err, log.messages())
			}
			if got, want := log.sent(), bigKernel+bigInitrd+tb.Files["kexec/run"]; got != want {
				t.Errorf("sent %d bytes, want %d (everything)", got, want)
			}
			if _, ok := log.said(event.Info, "no sha256sum"); !ok {
				t.Errorf("no event says the host lacks sha256sum:\n%s", log.messages())
			}
			checkInstalled(t, tb, w, staging)
		})
	}
}

// Bytes that change on the host while the rest is sent fail the check after
// the upload: the file is sent again whole, once.
func TestUploadSendsAgainWhatDoesNotVerifyAfterwards(t *testing.T) {
	for _, via := range transports {
		t.Run(via.name, func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{NoSFTP: via.noSFTP})
			c := connectTo(t, s.Addr, s)
			tb := bigTarball(t)
			w, staging := prepare(t, c, tb)
			initrd, _ := os.ReadFile(filepath.Join(tb.Dir, "kexec", "initrd"))
			part := filepath.Join(staging, "kexec", "initrd.part")
			os.MkdirAll(filepath.Dir(part), 0o700)
			if err := os.WriteFile(part, initrd[:3<<20], 0o600); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			log := &eventLog{onEach: func(e event.Event) {
				// The first progress: the start was checked, the rest is on its way.
				if e.Kind == event.Progress {
					once.Do(func() {
						f, err := os.OpenFile(part, os.O_WRONLY, 0)
						if err != nil {
							t.Errorf("open the partial initrd: %v", err)
							return
						}
						f.WriteAt([]byte{^initrd[100]}, 100)
						f.Close()
					})
				}
			}}
			if err := Upload(context.Background(), c, tb, w, log); err != nil {
				t.Fatalf("Upload: %v\nevents:\n%s", err, log.messages())
			}
			if _, ok := log.said(event.Warn, "kexec/initrd does not verify on the host after the upload"); !ok {
				t.Errorf("no warning says the initrd did not verify:\n%s", log.messages())
			}
			if got := log.sent(); got != bigInitrd {
				t.Errorf("the last round sent %d bytes, want %d (the initrd again, whole)", got, bigInitrd)
			}
			checkInstalled(t, tb, w, staging)
		})
	}
}

// TestStagedBytesKeepsOnlyThisTarballsUpload: what a cut upload of this
// tarball left is measured (the pre-flight counts it as room already
// taken), and the staging directories of other tarballs are removed.
func TestStagedBytesKeepsOnlyThisTarballsUpload(t *testing.T) {
	sshtest.Need(t)
	s := sshtest.Start(t, sshtest.Options{})
	c := connectTo(t, s.Addr, s)
	tb := bigTarball(t)
	w, staging := prepare(t, c, tb)
	other := filepath.Join(filepath.Dir(w.Path), StagingPrefix+"0123456789abcdef")
	t.Cleanup(func() { os.RemoveAll(other) })
	for dir, size := range map[string]int{staging: 3 << 20, other: 1 << 20} {
		if err := os.MkdirAll(filepath.Join(dir, "kexec"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "kexec", "initrd.part"), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := StagedBytes(context.Background(), c, w, tb)
	if err != nil {
		t.Fatal(err)
	}
	// du counts blocks: at least the bytes, at most a few blocks more.
	if want := int64(3 << 20); got < want || got > want+64<<10 {
		t.Errorf("StagedBytes = %d, want about %d", got, want)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("another tarball's staging dir %s: %v, want it removed", other, err)
	}
	if _, err := os.Stat(staging); err != nil {
		t.Errorf("this tarball's staging dir: %v, want it kept", err)
	}
	os.RemoveAll(staging)
	if got, err := StagedBytes(context.Background(), c, w, tb); err != nil || got != 0 {
		t.Errorf("StagedBytes with nothing staged = %d, %v; want 0", got, err)
	}
}
