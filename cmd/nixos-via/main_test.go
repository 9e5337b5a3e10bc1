package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/cmd/nixos-via/cli"
	"github.com/nixos-via/nixos-via/internal/testutil"
)

// TestOnInterrupt: the first Ctrl-C cancels the run (which then cleans
// up), the second exits at once with the interrupted code.
func TestOnInterrupt(t *testing.T) {
	var out testutil.SyncBuffer
	exited := make(chan int, 1)
	ctx, stop := onInterrupt(&out, func(code int) { exited <- code })
	defer stop()

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first SIGINT did not cancel the run's context within 10s")
	}
	select {
	case code := <-exited:
		t.Fatalf("the first SIGINT exited (%d); want only the context cancelled, so the run can clean up", code)
	case <-time.After(200 * time.Millisecond):
	}
	if got, want := out.String(), "interrupt again to exit at once"; !strings.Contains(got, want) {
		t.Errorf("after the first SIGINT the output is %q, want it to say %q", got, want)
	}

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if got, want := code, cli.ExitInterrupted; got != want {
			t.Errorf("second SIGINT exited with %d, want %d", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second SIGINT did not exit within 10s")
	}
}
