// Command nixos-via installs NixOS onto a machine reachable over SSH.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixos-via/nixos-via/cmd/nixos-via/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, cli.Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
