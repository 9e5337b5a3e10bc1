package sequence

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// systemFromStore is buildSystem with --from STORE (nixos-anywhere's
// `nix copy --from STORE`): the toplevel is --store-paths' SYSTEM, or the
// flake's toplevel evaluated (not built: nixos-anywhere builds it here
// first, we leave the local store alone), and its closure's path-info and
// NARs come from STORE: a file:// or http(s):// binary cache, whose
// narinfo NarHash is what every NAR is checked against, or an ssh:// or
// ssh-ng:// host, whose registered narHash is (closure.SSHStore).
func (r *run) systemFromStore(ctx context.Context) error {
	p := r.p
	if err := checkFrom(p.From); err != nil {
		return err
	}
	top, err := r.fromToplevel(ctx)
	if err != nil {
		return err
	}
	src, err := r.openFrom(ctx)
	if err != nil {
		return err
	}
	r.step(phase.Build, "reading the closure of %s from %s", top, p.From)
	infos, err := src.Closure(ctx, top)
	if err != nil {
		return fmt.Errorf("read the system from --from: %w (the store must hold the whole closure: nix copy --to %s %s)", err, p.From, top)
	}
	r.toplevel, r.closure, r.source = top, infos, src
	var size uint64
	for _, info := range infos {
		size += info.NarSize
	}
	r.info(phase.Build, "system %s in %s: %d paths, %s", top, p.From, len(infos), event.Bytes(int64(size)))
	r.nixStore = nixStoreByName(infos)
	if r.nixStore == "" {
		return fmt.Errorf("the system %s has no nix package in its closure (a path named nix-VERSION): it cannot register its own store", top)
	}
	return nil
}

// fromSource is a --from store: the closure's path-info and its NARs.
type fromSource interface {
	closure.NARSource
	Closure(ctx context.Context, top string) ([]nix.PathInfo, error)
}

// checkFrom refuses a --from URL that is not one of the stores read
// (file://, http(s)://, ssh://, ssh-ng://) or not well-formed, as a usage
// error, before anything is touched.
func checkFrom(store string) error {
	switch {
	case closure.IsBinaryCache(store):
		if _, err := closure.OpenBinaryCache(store); err != nil {
			return phase.Usagef("%v", err)
		}
	case closure.IsSSHStore(store):
		if _, err := closure.ParseSSHStore(store); err != nil {
			return phase.Usagef("%v", err)
		}
	default:
		return phase.Usagef("--from %q: want file://DIR, http(s)://CACHE, ssh://[USER@]HOST[:PORT] or ssh-ng://…", store)
	}
	return nil
}

// openFrom opens the --from store; an ssh:// or ssh-ng:// one is dialled
// (r.fromConn, closed when the run ends).
func (r *run) openFrom(ctx context.Context) (fromSource, error) {
	p := r.p
	if closure.IsBinaryCache(p.From) {
		cache, err := closure.OpenBinaryCache(p.From)
		if err != nil {
			return nil, phase.Usagef("%v", err)
		}
		return cache, nil
	}
	u, err := closure.ParseSSHStore(p.From)
	if err != nil {
		return nil, phase.Usagef("%v", err)
	}
	opts := storeHostOptions(u, p.Target)
	if opts.Warn == nil {
		opts.Warn = r.warn
	}
	res, err := opts.Resolve(p.Home)
	if err != nil {
		return nil, phase.Usagef("--from %s: %v", p.From, err)
	}
	r.step(phase.Build, "connecting to the --from store %s", p.From)
	conn, err := target.ReachHost(ctx, res, p.Home, target.Reach{What: "up (the --from store)", Timeout: p.ConnectTimeout, Retry: unreachableOnly})
	if err != nil {
		return nil, fmt.Errorf("connect to the --from store %s: %w", p.From, err)
	}
	r.fromConn = conn
	return closure.NewSSHStore(u, conn), nil
}

// storeHostOptions is how to reach an ssh:// --from store: its URL's
// user, host, port, ssh-key and host key, and the user's own SSH setup as
// the target's options carry it (ssh_config, agent, known_hosts and its
// checking, prompts, timeouts), but none of the target's credentials,
// keys, pins or -o options.
func storeHostOptions(u closure.SSHStoreURL, t target.Options) target.Options {
	o := target.Options{
		Destination: u.Destination(), Port: u.Port,
		AgentSocket: t.AgentSocket, KnownHostsFiles: t.KnownHostsFiles, StrictHostKeyChecking: t.StrictHostKeyChecking,
		SSHConfigFile: t.SSHConfigFile, ConnectTimeout: t.ConnectTimeout, ServerAliveInterval: t.ServerAliveInterval,
		Prompt: t.Prompt, Warn: t.Warn, Trace: t.Trace,
	}
	if u.SSHKey != "" {
		o.IdentityFiles = []string{u.SSHKey}
	}
	if u.HostKey != nil {
		o.PinnedKey, o.PinSource = u.HostKey, "the --from URL's base64-ssh-public-host-key"
	}
	return o
}

// fromToplevel is the system's store path without building it.
func (r *run) fromToplevel(ctx context.Context) (string, error) {
	p := r.p
	if p.StorePaths != nil {
		top := p.StorePaths.System
		if !strings.HasPrefix(top, nix.StoreDir+"/") {
			// A local result link to it, as nixos-anywhere takes.
			real, err := filepath.EvalSymlinks(top)
			if err != nil {
				return "", phase.Usagef("--store-paths: system %s: %v (with --from give the store path itself)", top, err)
			}
			top = real
		}
		if err := nix.CheckStorePath(top); err != nil {
			return "", phase.Usagef("--store-paths: system: %v", err)
		}
		return top, nil
	}
	attr := p.FlakeRef + "#" + p.FlakeAttr + ".system.build.toplevel.outPath"
	r.step(phase.Build, "evaluating %s", attr)
	var top string
	if err := p.Nix.EvalInto(ctx, attr, &top); err != nil {
		return "", fmt.Errorf("evaluate the system: %w", err)
	}
	if err := nix.CheckStorePath(top); err != nil {
		return "", fmt.Errorf("evaluate the system: %w", err)
	}
	return top, nil
}

// nixPackage is the name of Nix's own package (nix-2.18.1, nix-2.8.0):
// not nix-store-... or nix-info-....
var nixPackage = regexp.MustCompile(`^nix-[0-9][0-9.]*(pre[0-9_a-z]*)?$`)

// nixStoreByName is FindNixStore for a closure that is not on this
// machine: bin/nix-store of the closure's nix package, found by name (the
// last one in path order if there are several).
func nixStoreByName(infos []nix.PathInfo) string {
	found := ""
	for _, info := range infos {
		base := strings.TrimPrefix(info.Path, nix.StoreDir+"/")
		if len(base) > 33 && nixPackage.MatchString(base[33:]) {
			found = info.Path + "/bin/nix-store"
		}
	}
	return found
}

// withFromCache puts an http(s) --from cache first among the caches the
// target substitutes from: it has the whole closure.
func (r *run) withFromCache(caches []string) []string {
	if r.p.From == "" || !r.p.Substitute {
		return caches
	}
	if usable, _ := closure.HTTPCaches([]string{r.p.From}); len(usable) == 0 {
		return caches
	}
	return dedupe(append([]string{r.p.From}, caches...))
}
