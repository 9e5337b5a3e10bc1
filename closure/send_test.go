package closure

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

func TestSendLocalSubprocess(t *testing.T) {
	_, infos := nixtest.Closure(t, "install-local")
	for _, jobs := range []int{1, 3} {
		t.Run("jobs="+string(rune('0'+jobs)), func(t *testing.T) {
			root := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rec := &testutil.Recorder{}
			runner := &localRunner{}
			opts := SendOptions{Agent: agentBin, Root: root, Jobs: jobs, Sink: rec}
			stats, err := Send(ctx, runner, infos, opts)
			if err != nil {
				t.Fatal(err)
			}
			var total uint64
			for _, info := range infos {
				total += info.NarSize
			}
			if stats.Sent != len(infos) || stats.Present != 0 || stats.NarBytes != total {
				t.Errorf("first run stats %+v, want all %d paths (%d bytes) sent", stats, len(infos), total)
			}
			if got := runner.sessions.Load(); got != int64(jobs) {
				t.Errorf("first run opened %d sessions, want %d receivers (the first answering the query)", got, jobs)
			}
			checkReceived(t, root, infos)
			checkNoPartial(t, root, false)
			events := rec.Events()
			last := events[len(events)-1]
			var lastProgress event.Event
			for _, e := range events {
				if e.Kind == event.Progress {
					lastProgress = e
				}
			}
			if last.Kind != event.Done || lastProgress.Done != int64(total) || lastProgress.Total != int64(total) ||
				lastProgress.Data["paths"] != lastProgress.Data["paths_total"] {
				t.Errorf("events end with %+v after progress %+v, want done after full progress", last, lastProgress)
			}

			// A re-run sends the query ahead of the first receiver's
			// stream, and every receiver an empty stream.
			runner.sessions.Store(0)
			again, err := Send(ctx, runner, infos, opts)
			if err != nil {
				t.Fatal(err)
			}
			if again.Sent != 0 || again.Present != len(infos) || again.NarBytes != 0 {
				t.Errorf("re-run stats %+v, want nothing sent", again)
			}
			if got := runner.sessions.Load(); got != int64(jobs) {
				t.Errorf("re-run opened %d sessions, want %d receivers (the first answering the query)", got, jobs)
			}
			var queryBytes uint64
			for _, info := range infos {
				queryBytes += uint64(len(info.Path) + 1 + len(info.NarHash.String()) + 1)
			}
			// An empty stream: a zstd frame and block header (9 bytes), the
			// magic (33) and the trailer (24).
			if want := queryBytes + 64 + uint64(jobs)*66; again.WireBytes > want {
				t.Errorf("re-run wrote %d bytes, want only the query and empty streams (at most %d)", again.WireBytes, want)
			}
		})
	}
}

// TestRegistrationLoadsAfterReceive: Nix itself accepts what was received,
// with the records as its registration.
func TestRegistrationLoadsAfterReceive(t *testing.T) {
	top, infos := nixtest.Closure(t, "install-local")
	root := t.TempDir()
	ctx := context.Background()
	if _, err := Send(ctx, &localRunner{}, infos, SendOptions{Agent: agentBin, Root: root, Jobs: 2}); err != nil {
		t.Fatal(err)
	}
	records, err := ReadRecords(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != len(infos) {
		t.Fatalf("%d records, want %d", len(records), len(infos))
	}
	reg, err := nix.Registration(records)
	if err != nil {
		t.Fatal(err)
	}
	store := "local?root=" + root
	load := exec.Command("nix-store", "--store", store, "--load-db")
	load.Stdin = strings.NewReader(reg)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --load-db: %v: %s", err, out)
	}
	out, err := exec.Command("nix-store", "--store", store, "--verify", "--check-contents").CombinedOutput()
	if err != nil || strings.Contains(string(out), "error") {
		t.Errorf("nix-store --verify --check-contents: %v: %s", err, out)
	}
	req, err := exec.Command("nix-store", "--store", store, "-qR", top).Output()
	if err != nil || len(strings.Fields(string(req))) != len(infos) {
		t.Errorf("nix-store -qR %s in the target store: %q (%v), want %d paths", top, req, err, len(infos))
	}
}

func TestSendCutMidStreamThenResume(t *testing.T) {
	_, infos := nixtest.Closure(t, "install-local")
	// Paths go biggest first: blob-a (2 MiB, random), blob-b (1 MiB), then small ones.
	for _, tc := range []struct {
		name         string
		bufferLimit  uint64
		cutAfter     int64
		kill         bool
		wantComplete int // at least this many paths survive the cut
	}{
		{"stdin ends inside the first path", 0, 512 << 10, false, 0},
		{"stdin ends after the first path", 0, 2600 << 10, false, 1},
		{"stdin ends after the first path, streamed NARs", 1, 2600 << 10, false, 1},
		{"agent killed after the first path", 0, 2600 << 10, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cut := &cuttingRunner{cutAfter: tc.cutAfter, kill: tc.kill}
			opts := SendOptions{Agent: agentBin, Root: root, BufferLimit: tc.bufferLimit}
			_, err := Send(ctx, cut, infos, opts)
			if err == nil {
				t.Fatal("Send over a cut connection succeeded")
			}
			if !cut.cut.Load() {
				t.Fatalf("the connection was never cut; error: %v", err)
			}
			complete := checkNoPartial(t, root, tc.kill)
			t.Logf("cut after %d bytes: %d of %d paths complete; error: %v", tc.cutAfter, complete, len(infos), err)
			if complete == len(infos) || complete < tc.wantComplete {
				t.Errorf("%d of %d paths complete after the cut, want at least %d and not all", complete, len(infos), tc.wantComplete)
			}
			stats, err := Send(ctx, &localRunner{}, infos, opts)
			if err != nil {
				t.Fatalf("re-run after the cut: %v", err)
			}
			if stats.Present != complete || stats.Sent != len(infos)-complete {
				t.Errorf("re-run stats %+v, want %d present and %d sent", stats, complete, len(infos)-complete)
			}
			checkReceived(t, root, infos)
			checkNoPartial(t, root, false)
		})
	}
}

func TestSendRefusesChangedLocalPath(t *testing.T) {
	_, infos := nixtest.Closure(t, "install-local")
	for _, limit := range []uint64{0, 1} {
		bad := append([]nix.PathInfo(nil), infos...)
		victim := 0
		bad[victim].NarHash[0] ^= 0xff
		root := t.TempDir()
		_, err := Send(context.Background(), &localRunner{}, bad, SendOptions{Agent: agentBin, Root: root, BufferLimit: limit})
		if err == nil || !strings.Contains(err.Error(), "refusing to send") {
			t.Fatalf("Send with a wrong narHash (limit %d): error = %v, want a refusal", limit, err)
		}
		if _, err := os.Lstat(filepath.Join(root, bad[victim].Path)); err == nil {
			t.Errorf("the refused path %s reached the target", bad[victim].Path)
		}
		checkNoPartial(t, root, false)
	}
}

func TestSendBadOptions(t *testing.T) {
	_, infos := nixtest.Closure(t, "install-local")
	tests := []struct {
		name string
		opts SendOptions
		want string
	}{
		{"no agent", SendOptions{Root: "/mnt"}, "no agent"},
		{"relative root", SendOptions{Agent: agentBin, Root: "mnt"}, "absolute"},
		{"agent missing", SendOptions{Agent: "/nonexistent/nixos-via", Root: t.TempDir()}, "/nonexistent/nixos-via agent receive"},
	}
	for _, tt := range tests {
		_, err := Send(context.Background(), &localRunner{}, infos, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}
