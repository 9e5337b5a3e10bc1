// Command via is the benchmark's stand-in for nixos-via: `via send` copies
// store paths from a local (chroot) store to a target over SSH with the
// closure package, exactly as the install phase does; `via agent` is the
// on-target agent. VIA_CPUPROFILE=FILE writes a CPU profile.
//
//	via send --store-root DIR --paths FILE --port N --key FILE --known-hosts FILE --root DIR --agent CMD [--jobs N] [--caches URL,...]
//	via agent query|receive|substitute --root DIR
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/target"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if p := os.Getenv("VIA_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if len(os.Args) < 2 {
		fail(2, "usage: via send ... | via agent query|receive|substitute --root DIR")
	}
	switch os.Args[1] {
	case "agent":
		a := os.Args[2:]
		if len(a) != 3 || a[1] != "--root" {
			fail(2, "usage: via agent query|receive|substitute --root DIR")
		}
		var err error
		switch a[0] {
		case "query":
			err = closure.AnswerQuery(ctx, os.Stdin, os.Stdout, a[2])
		case "receive":
			err = closure.ServeReceive(ctx, os.Stdin, os.Stdout, a[2])
		case "substitute":
			err = closure.ServeSubstitute(ctx, os.Stdin, os.Stdout, a[2])
		default:
			fail(2, "unknown agent verb "+a[0])
		}
		if err != nil {
			fail(1, "agent: "+err.Error())
		}
	case "send":
		if err := send(ctx, os.Args[2:]); err != nil {
			fail(1, "send: "+err.Error())
		}
	default:
		fail(2, "unknown verb "+os.Args[1])
	}
}

func fail(code int, msg string) {
	pprof.StopCPUProfile()
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(code)
}

func send(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("via send", flag.ContinueOnError)
	storeRoot := fs.String("store-root", "", "root of the local chroot store")
	pathsFile := fs.String("paths", "", "file with one store path a line")
	port := fs.Int("port", 22, "SSH port on 127.0.0.1")
	key := fs.String("key", "", "SSH private key")
	knownHosts := fs.String("known-hosts", "", "known_hosts file")
	root := fs.String("root", "", "target root")
	agent := fs.String("agent", "", "agent command on the target")
	jobs := fs.Int("jobs", 1, "parallel channels")
	caches := fs.String("caches", "", "binary caches the agent substitutes from, comma-separated (none: stream everything)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*pathsFile)
	if err != nil {
		return err
	}
	var paths []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p := strings.TrimSpace(sc.Text()); p != "" {
			paths = append(paths, p)
		}
	}
	f.Close()
	start := time.Now()
	// As in nixos-via, where the closure is known and the connection open
	// before the copy starts, neither waits for the other.
	type dialed struct {
		conn *target.Conn
		err  error
	}
	dialDone := make(chan dialed, 1)
	go func() {
		conn, err := target.Dial(ctx, target.Options{
			Destination:           fmt.Sprintf("root@127.0.0.1:%d", *port),
			IdentityFiles:         []string{*key},
			KnownHostsFiles:       []string{*knownHosts},
			StrictHostKeyChecking: target.StrictYes,
			SSHConfigFile:         "none",
			ConnectTimeout:        10 * time.Second,
		}, os.TempDir())
		dialDone <- dialed{conn, err}
	}()
	cli := nix.CLI{Args: []string{"--store", *storeRoot}}
	infos, err := cli.Closure(ctx, paths...)
	d := <-dialDone
	if d.conn != nil {
		defer d.conn.Close()
	}
	if err != nil {
		return err
	}
	if d.err != nil {
		return d.err
	}
	conn := d.conn
	opts := closure.SendOptions{Agent: *agent, Root: *root, Jobs: *jobs, LocalRoot: *storeRoot}
	if *caches != "" {
		opts.Substitute.Caches = strings.Split(*caches, ",")
	}
	stats, err := closure.Send(ctx, conn, infos, opts)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"paths": stats.Paths, "present": stats.Present, "sent": stats.Sent, "substituted": stats.Substituted,
		"nar_bytes": stats.NarBytes, "stream_bytes": stats.WireBytes, "compression": stats.Compression,
		"seconds": time.Since(start).Seconds(),
	})
}
