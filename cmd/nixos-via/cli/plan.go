package cli

import (
	"bufio"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/sequence"
)

// plan is the sequencer's Plan: the one the flags filled in, with what
// the environment gives: how to reach the host with its secrets, where
// the local Nix logs and installer tarballs go, and the two things only a
// terminal gives (the wipe confirmation and the passphrase prompts).
func (o *Options) plan(env Env, sink event.Sink) (sequence.Plan, error) {
	p := o.Plan
	var err error
	p.Target, err = o.conn.resolve(env, func(m string) { sink.Emit(event.Event{Kind: event.Warn, Msg: m}) })
	if err != nil {
		return p, err
	}
	p.ConnectTimeout, p.Home = o.conn.Timeout, home(env)
	p.Kexec.CacheDir, p.Kexec.HTTP = cacheDir(env), &http.Client{Timeout: 30 * time.Minute}
	if o.printBuildLog {
		p.Nix.Log = env.Stderr
	}
	if in, ok := terminal(env.Stdin); ok {
		p.Terminal = &diskorun.Terminal{In: in, Out: env.Stderr, Term: env.Getenv("TERM")}
	}
	p.Confirm = o.confirm(env)
	return p, nil
}

// confirm asks before wiping when a person is at a terminal and --yes was
// not given. Without a terminal the run goes on, as nixos-anywhere does
// (automation); the list is still printed.
func (o *Options) confirm(env Env) func() error {
	in, ok := terminal(env.Stdin)
	if o.Yes || !ok {
		return nil
	}
	return func() error {
		fmt.Fprint(env.Stderr, "Type \"yes\" to erase them: ")
		line, _ := bufio.NewReader(in).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return &phase.Refusal{Check: "confirm", Msg: "not confirmed; nothing was touched"}
		}
		return nil
	}
}

// cacheDir keeps fetched installer tarballs.
func cacheDir(env Env) string {
	if d := env.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "nixos-via", "kexec")
	}
	return filepath.Join(home(env), ".cache", "nixos-via", "kexec")
}
