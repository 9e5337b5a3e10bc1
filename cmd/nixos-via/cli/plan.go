package cli

import (
	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/kexec"
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
	p.Kexec.CacheDir = kexec.UserCacheDir(env.Getenv("XDG_CACHE_HOME"), p.Home)
	if o.printBuildLog {
		p.Nix.Log = env.Stderr
	}
	// Only a person at a terminal is asked before the wipe (and not with
	// --yes); without one the run goes on, as nixos-anywhere does
	// (automation), and the list is still printed.
	if in, ok := terminal(env.Stdin); ok {
		p.Terminal = &diskorun.Terminal{In: in, Out: env.Stderr, Term: env.Getenv("TERM")}
		if !o.Yes {
			p.Confirm = p.Terminal.Confirm
		}
	}
	return p, nil
}
