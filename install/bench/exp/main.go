package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/nix"
)

type fileRunner struct{ out string }

func (f fileRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if strings.Contains(cmd, " query ") {
		io.Copy(io.Discard, stdin)
		fmt.Fprint(stdout, "nixos-via-valid 1\nend 0\n")
		return nil
	}
	fh, _ := os.Create(f.out)
	defer fh.Close()
	n, _ := io.Copy(fh, stdin)
	_ = n
	var np, nb int
	_ = np
	_ = nb
	return fmt.Errorf("stop")
}

func main() {
	ctx := context.Background()
	pf, _ := os.Create("/tmp/exp-" + os.Args[1] + ".prof")
	pprof.StartCPUProfile(pf)
	defer pprof.StopCPUProfile()
	switch os.Args[1] {
	case "send":
		f, _ := os.Open(os.Args[3])
		var paths []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			paths = append(paths, sc.Text())
		}
		t := time.Now()
		infos, err := nix.CLI{Args: []string{"--store", os.Args[2]}}.PathInfo(ctx, paths...)
		fmt.Println("pathinfo", time.Since(t), err)
		t = time.Now()
		_, err = install.Send(ctx, fileRunner{out: os.Args[4]}, infos, install.SendOptions{Agent: "x", Root: "/x", LocalRoot: os.Args[2]})
		fmt.Println("send", time.Since(t), err)
	case "recv":
		f, _ := os.Open(os.Args[2])
		t := time.Now()
		st, err := install.Receive(ctx, bufio.NewReaderSize(f, 1<<20), os.Args[3], install.ReceiveOptions{})
		fmt.Println("recv", time.Since(t), st, err)
	}
}
