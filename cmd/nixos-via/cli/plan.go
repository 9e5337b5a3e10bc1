package cli

import (
	"bufio"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/hwconfig"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/kexec"
	"github.com/nixos-via/nixos-via/sequence"
)

// plan turns the parsed command line into the sequencer's Plan: target
// options with their secrets, the local Nix, the phases' options, and the
// two things only a terminal gives (the wipe confirmation and the
// passphrase prompts).
func (o *Options) plan(env Env, sink event.Sink) (sequence.Plan, error) {
	warn := func(m string) { sink.Emit(event.Event{Kind: event.Warn, Msg: m}) }
	topts, err := o.targetOptions(env, warn)
	if err != nil {
		return sequence.Plan{}, err
	}
	p := sequence.Plan{
		Host: o.Host, Target: topts, Home: home(env), ConnectTimeout: o.TimeoutConnect, Phases: o.Phases,
		Flake: o.Flake, FlakeRef: o.FlakeRef, FlakeAttr: o.FlakeAttr, DiskoMode: o.DiskoMode, KeyFiles: o.DiskEncryptionKey,
		Kexec: kexec.Options{Source: o.Kexec, SHA256: o.KexecSHA256, Force: o.ForceKexec, CacheDir: cacheDir(env),
			HTTP: &http.Client{Timeout: 30 * time.Minute}, ExtraFlags: o.KexecExtraFlags, PostKexecPort: o.PostKexecPort,
			DownTimeout: o.TimeoutKexec, UpTimeout: o.TimeoutKexec},
		Agent: o.Agent, CopyJobs: o.CopyJobs, ExtraFiles: o.ExtraFiles, Chown: o.Chown, CopyHostKeys: o.CopyHostKeys,
		Substitute: !o.NoSubstitute, MachineSubstituters: !o.NoMachineSubst,
		RebootTimeout: o.TimeoutReboot,
	}
	if o.Debug || o.PrintBuildLog {
		p.Nix.Log = env.Stderr
	}
	for _, n := range o.NixOptions {
		p.Nix.Args = append(p.Nix.Args, "--option", n.Name, n.Value)
	}
	if o.ShowTrace {
		p.Nix.Args = append(p.Nix.Args, "--show-trace")
	}
	if o.StorePaths != nil {
		p.StorePaths = &sequence.StorePaths{Disko: o.StorePaths.Disko, System: o.StorePaths.System}
	}
	if o.GenerateHWConfig != nil {
		p.HardwareConfig = &hwconfig.Options{Tool: o.GenerateHWConfig.Tool, Path: o.GenerateHWConfig.Path}
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
