// Command nixos-via installs NixOS onto a machine reachable over SSH.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixos-via/nixos-via/cmd/nixos-via/cli"
)

func main() {
	ctx, stop := onInterrupt(os.Stderr, os.Exit)
	code := cli.Run(ctx, cli.Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// onInterrupt returns a context that the first SIGINT or SIGTERM cancels:
// the run stops its remote commands and removes what it left on the host.
// A second signal calls exit(cli.ExitInterrupted) at once, cleanup or not.
func onInterrupt(w io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		fmt.Fprintln(w, "nixos-via: stopping: remote commands are stopped and their traces removed; interrupt again to exit at once")
		cancel()
		select {
		case <-sigs:
			fmt.Fprintln(w, "nixos-via: interrupted again: exiting without cleaning up")
			exit(cli.ExitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
