// Command sampler watches every process's argv and environment for
// secrets, for the secrets test in vmtests/e2e.
//
//	sampler HEX...
//
// Each HEX is one secret, hex-encoded so that the sampler's own argv does
// not hold it. Every 20 ms it reads /proc/*/cmdline and /proc/*/environ of
// every process but itself. A secret found prints
// "SECRET-HIT pid=P comm=C in=argv|environ secret=#I"; the first time a
// command name is seen it prints "SAMPLER saw comm=C"; every 2 s it prints
// "SAMPLER scans=N". It never prints a secret.
package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	var secrets [][]byte
	for _, a := range os.Args[1:] {
		b, err := hex.DecodeString(a)
		if err != nil || len(b) == 0 {
			fmt.Fprintf(os.Stderr, "sampler: %q is not a hex-encoded secret\n", a)
			os.Exit(2)
		}
		secrets = append(secrets, b)
	}
	self := os.Getpid()
	seen := map[string]bool{}
	reported := map[string]bool{}
	last := time.Now()
	for scans := 1; ; scans++ {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			pid, err := strconv.Atoi(filepath.Base(d))
			if err != nil || pid == self {
				continue
			}
			comm, _ := os.ReadFile(d + "/comm")
			name := strings.TrimSpace(string(comm))
			if name != "" && !seen[name] {
				seen[name] = true
				fmt.Printf("SAMPLER saw comm=%s\n", name)
			}
			for _, where := range []string{"cmdline", "environ"} {
				b, err := os.ReadFile(d + "/" + where)
				if err != nil {
					continue
				}
				for i, s := range secrets {
					key := fmt.Sprintf("%d/%s/%d", pid, where, i)
					if bytes.Contains(b, s) && !reported[key] {
						reported[key] = true
						in := map[string]string{"cmdline": "argv", "environ": "environ"}[where]
						fmt.Printf("SECRET-HIT pid=%d comm=%s in=%s secret=#%d\n", pid, name, in, i)
					}
				}
			}
		}
		if time.Since(last) >= 2*time.Second {
			fmt.Printf("SAMPLER scans=%d\n", scans)
			last = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
}
