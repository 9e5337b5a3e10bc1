package closure

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// useXZTool makes the decoder use tool ("" for none) for one test.
func useXZTool(t *testing.T, tool string) {
	t.Helper()
	old := xzToolPath
	xzToolPath = func() string { return tool }
	t.Cleanup(func() { xzToolPath = old })
}

// fakeXZ writes an executable script named xz in a new directory.
func fakeXZ(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "xz")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func realXZ(t *testing.T) string {
	t.Helper()
	p := findXZTool()
	if p == "" {
		t.Skip("no xz of XZ Utils")
	}
	return p
}

// Both decoders give the same bytes for what xz(1) and the Go writer make.
func TestXZDecodersAgree(t *testing.T) {
	tool := realXZ(t)
	data := xzSample()
	tests := []struct {
		name string
		xz   func(t *testing.T) []byte
	}{
		{"xz -6", func(t *testing.T) []byte { return xzTool(t, data) }},
		{"xz -9e", func(t *testing.T) []byte { return xzTool(t, data, "-9e") }},
		{"xz -T2 blocks", func(t *testing.T) []byte { return xzTool(t, data, "-T2", "--block-size=1MiB") }},
		{"two streams", func(t *testing.T) []byte {
			return append(xzTool(t, data[:1<<20]), xzTool(t, data[1<<20:])...)
		}},
		{"Go writer", func(t *testing.T) []byte { return xzGo(t, data) }},
		{"empty", func(t *testing.T) []byte { return xzTool(t, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.xz(t)
			want := data
			if tt.name == "empty" {
				want = []byte{}
			}
			for _, decoder := range []string{tool, ""} {
				useXZTool(t, decoder)
				d, err := newXZDecoder(bytes.NewReader(in), uint64(len(want)))
				if err != nil {
					t.Fatalf("decoder %q: %v", decoder, err)
				}
				if _, child := d.(*xzChild); child != (decoder != "") {
					t.Errorf("decoder %q: got %T", decoder, d)
				}
				got, err := io.ReadAll(d)
				d.Close()
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("decoder %q: got %d bytes (equal %v), err %v; want %d bytes", decoder, len(got), bytes.Equal(got, want), err, len(want))
				}
			}
		})
	}
}

// A missing, BusyBox-like or unstartable xz means the Go decoder; one that
// fails while decoding fails the read.
func TestXZToolFallbackAndFailure(t *testing.T) {
	realXZ(t)
	data := xzSample()
	in := xzTool(t, data)
	tests := []struct {
		name    string
		tool    func(t *testing.T) string // what xzToolPath gives
		child   bool                      // the xz child decodes
		wantErr bool
	}{
		{"none", func(t *testing.T) string { return "" }, false, false},
		{"unstartable", func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") }, false, false},
		{"exits 1", func(t *testing.T) string { return fakeXZ(t, "cat >/dev/null; echo 'xz: broken' >&2; exit 1") }, true, true},
		{"dies at once", func(t *testing.T) string { return fakeXZ(t, "exit 3") }, true, true},
		{"real", func(t *testing.T) string { return realXZ(t) }, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			useXZTool(t, tt.tool(t))
			d, err := newXZDecoder(bytes.NewReader(in), uint64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if _, child := d.(*xzChild); child != tt.child {
				t.Errorf("got %T, want the child: %v", d, tt.child)
			}
			got, err := io.ReadAll(d)
			if (err != nil) != tt.wantErr {
				t.Fatalf("read: %v, want an error: %v", err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(got, data) {
				t.Errorf("got %d bytes unlike the %d given", len(got), len(data))
			}
		})
	}
}

// findXZTool takes only XZ Utils.
func TestFindXZTool(t *testing.T) {
	tests := []struct {
		name, script string
		found        bool
	}{
		{"xz utils", "echo 'xz (XZ Utils) 5.4.1'; echo 'liblzma 5.4.1'", true},
		{"busybox", "echo 'BusyBox v1.36.1 multi-call binary.'; exit 1", false},
		{"fails", "exit 1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := fakeXZ(t, tt.script)
			t.Setenv("PATH", filepath.Dir(p))
			if got := findXZTool(); (got != "") != tt.found {
				t.Errorf("findXZTool() = %q, want found: %v", got, tt.found)
			}
		})
	}
	t.Setenv("PATH", t.TempDir())
	if got := findXZTool(); got != "" {
		t.Errorf("findXZTool() with no xz = %q", got)
	}
}

// An xz on the target that exits 0 with the wrong bytes changes nothing:
// the narHash check refuses every xz NAR and the paths are streamed.
func TestSendRefusesWrongBytesFromXZTool(t *testing.T) {
	realXZ(t)
	_, infos := nixtest.Closure(t, "subst-xztool")
	cache := startCache(t, binaryCache(t, "xz", paths(infos)...))
	liar := fakeXZ(t, `case "$1" in --version) echo 'xz (XZ Utils) 5.4.1'; echo 'liblzma 5.4.1'; exit 0;; esac
`+realXZ(t)+` "$@" | tr a b`)
	t.Setenv("PATH", filepath.Dir(liar)+":"+os.Getenv("PATH"))
	if _, err := exec.LookPath("xz"); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stats, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: agentBin, Root: root, Sink: &testutil.Recorder{}, Substitute: fastSubstitute(cache.URL)})
	if err != nil {
		t.Fatal(err)
	}
	checkReceived(t, root, infos)
	checkNoPartial(t, root, false)
	if stats.Substituted != 0 || stats.Sent != len(infos) {
		t.Errorf("substituted %d, sent %d; want 0 and %d", stats.Substituted, stats.Sent, len(infos))
	}
}
