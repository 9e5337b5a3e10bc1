// Command testagent is a minimal `nixos-via agent` for the closure tests, so
// they do not depend on the full CLI: testagent agent query|receive|substitute --root DIR.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixos-via/nixos-via/closure"
)

func main() {
	a := os.Args[1:]
	if len(a) != 4 || a[0] != "agent" || a[2] != "--root" {
		fmt.Fprintln(os.Stderr, "usage: testagent agent query|receive|substitute --root DIR")
		os.Exit(2)
	}
	// A dropped SSH session may bring SIGHUP: stop, but let Receive commit
	// the paths it verified (it sees stdin end).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := closure.Serve(ctx, a[1], os.Stdin, os.Stdout, a[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}
