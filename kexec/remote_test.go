package kexec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/sshtest"
)

func TestHostDownloadsAndUnpacksTheTarball(t *testing.T) {
	data := makeTarball(t, installerEntries("#!/bin/sh\necho hi\n", 8192))
	bad := makeTarball(t, []tarEntry{{name: "other/file", mode: 0o644, data: []byte("x")}})
	mux := http.NewServeMux()
	mux.HandleFunc("/installer.tar.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(data) })
	mux.HandleFunc("/bad.tar.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(bad) })
	odd := installerEntries("#!/bin/sh\n", 0)
	odd[2].data = []byte("neither gzip, zstd nor xz")
	oddData := makeTarball(t, odd)
	mux.HandleFunc("/odd.tar.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(oddData) })
	xzEntries := installerEntries("#!/bin/sh\n", 0)
	xzEntries[2].data = xzed(t, bytes.Repeat([]byte("0707 squashfs"), 100000))
	xzData := makeTarball(t, xzEntries)
	mux.HandleFunc("/xz.tar.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(xzData) })
	srv := httptest.NewServer(mux) // 127.0.0.1: the "host" here is this machine's sshd
	defer srv.Close()
	s := sshtest.Start(t, sshtest.Options{})
	c := connectTo(t, s.Addr, s)
	ctx := context.Background()
	facts, err := c.ProbeFacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !facts.Tools.Curl && !facts.Tools.Wget {
		t.Skip("this machine has neither curl nor wget")
	}
	url := srv.URL + "/installer.tar.gz"
	// Probe with each tool this machine has (curl is preferred).
	for _, tool := range []string{"curl", "wget"} {
		f := *facts
		f.Tools.Curl = tool == "curl" && facts.Tools.Curl
		if tool == "wget" && !facts.Tools.Wget || tool == "curl" && !facts.Tools.Curl {
			continue
		}
		p := ProbeDownload(ctx, c, &f, url)
		if !p.OK || p.Bytes != int64(len(data)) {
			t.Errorf("%s probe = %+v, want OK with %d bytes", tool, p, len(data))
		}
		if p := ProbeDownload(ctx, c, &f, srv.URL+"/missing.tar.gz"); p.OK || p.Why == "" {
			t.Errorf("%s probe of a missing URL = %+v, want not OK with a reason", tool, p)
		}
	}

	sum := sha256.Sum256(data)
	w, err := PrepareWorkDir(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(w.Path) })
	tb, err := DownloadOnHost(ctx, c, facts, url, hex.EncodeToString(sum[:]), w)
	if err != nil {
		t.Fatal(err)
	}
	if tb.SHA256 != hex.EncodeToString(sum[:]) || tb.Bytes != int64(len(data)) || tb.KernelBytes != 4096 {
		t.Errorf("tarball = %+v", tb)
	}
	// The host's gzip measured what the new kernel will unpack.
	if tb.InitrdUnpacked != 8192 || tb.InitrdEstimated {
		t.Errorf("InitrdUnpacked = %d (estimated %v), want 8192 measured on the host", tb.InitrdUnpacked, tb.InitrdEstimated)
	}
	if st, err := os.Stat(filepath.Join(w.Path, "kexec", "run")); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("kexec/run not unpacked executable on the host: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.Path, "installer.tar")); err == nil {
		t.Errorf("the downloaded tarball was left behind")
	}
	// The same work directory serves RunScript.
	if _, err := RunScript(ctx, c, w, ""); err == nil || !strings.Contains(err.Error(), "hi") {
		t.Errorf("RunScript after a host download = %v, want run's output (and no marker)", err)
	}

	w2, _ := PrepareWorkDir(ctx, c)
	t.Cleanup(func() { os.RemoveAll(w2.Path) })
	if _, err := DownloadOnHost(ctx, c, facts, url, strings.Repeat("0", 64), w2); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("wrong sha256: err = %v", err)
	}
	w3, _ := PrepareWorkDir(ctx, c)
	t.Cleanup(func() { os.RemoveAll(w3.Path) })
	w4, _ := PrepareWorkDir(ctx, c)
	t.Cleanup(func() { os.RemoveAll(w4.Path) })
	if tb, err := DownloadOnHost(ctx, c, facts, srv.URL+"/odd.tar.gz", "", w4); err != nil || !tb.InitrdEstimated || tb.InitrdUnpacked != 4*tb.InitrdBytes {
		t.Errorf("an initrd the host cannot measure: %+v, %v; want it estimated at 4× its size", tb, err)
	}
	w5, _ := PrepareWorkDir(ctx, c)
	t.Cleanup(func() { os.RemoveAll(w5.Path) })
	if tb, err := DownloadOnHost(ctx, c, facts, srv.URL+"/xz.tar.gz", "", w5); err != nil || tb.InitrdEstimated || tb.InitrdUnpacked != 13*100000 {
		t.Errorf("an xz initrd (as nixos-images makes): %+v, %v; want %d bytes measured by the host's xz", tb, err, 13*100000)
	}
	if _, err := DownloadOnHost(ctx, c, facts, srv.URL+"/bad.tar.gz", "", w3); err == nil || !strings.Contains(err.Error(), "not a kexec installer") {
		t.Errorf("not an installer: err = %v", err)
	}
}

func TestIsURL(t *testing.T) {
	for in, want := range map[string]bool{"https://x/y.tar.gz": true, "http://127.0.0.1:8/k": true, "/tmp/k.tar.gz": false, "k.tar.gz": false, "file:///k": false} {
		if got := IsURL(in); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", in, got, want)
		}
	}
}
