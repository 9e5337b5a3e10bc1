// Package flakehosts reads the fleet a flake declares, in the shapes
// deploy-rs and colmena users already have, as []fleet.Host:
//
//   - deploy-rs: deploy.nodes.NAME with hostname, sshUser, sshOpts and
//     profiles.system (user, profilePath), the generic settings merged as
//     deploy-rs merges them (profile, then node, then the top level; the
//     first one set wins, sshOpts are appended in that order). Port and
//     identity come from sshOpts (-p, -i, -o, -l). The system built for
//     the node is profiles.system.path, what deploy-rs builds and sets as
//     the system profile (activate.nixos wraps the nixosConfiguration's
//     toplevel with its deploy-rs-activate and activate-rs scripts, which
//     nixos-via does not run: it switches with bin/switch-to-configuration).
//     Nodes without a system profile are not part of the fleet.
//   - colmena: the evaluated hive, colmenaHive = colmena.lib.makeHive
//     self.colmena (what colmena reads from a flake): per node
//     deployment.targetHost (default: the node's name), targetUser
//     (default root), targetPort and tags. The system built is the node's
//     config.system.build.toplevel. A node whose targetHost is null
//     (colmena: local deployment only) is not part of the fleet. colmena
//     reads no nixosConfigurations, and neither does this package.
//
// When a flake has both, the fleet is their union by name: a node in both
// connects and builds as deploy.nodes says (it names its address
// explicitly) and keeps colmena's tags, so --on @tag still finds it.
//
// Only these small attributes are evaluated (one `nix eval`); nothing is
// built until Build. Targets picks the hosts of a deploy (NAME=host
// pairs, the fleet, or one host), DeployTo deploys to one of them.
package flakehosts

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/fleet"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

//go:embed hosts.nix
var hostsNix string

// SystemProfile is the only profile path a NixOS system profile may have.
const SystemProfile = "/nix/var/nix/profiles/system"

type declared struct {
	DeployNodes   map[string]deployNode  `json:"deployNodes"`
	ColmenaSchema *string                `json:"colmenaSchema"`
	ColmenaNodes  map[string]colmenaNode `json:"colmenaNodes"`
	RawColmena    bool                   `json:"rawColmena"`
}

type deployNode struct {
	HasSystem   bool     `json:"hasSystem"`
	Hostname    *string  `json:"hostname"`
	SSHUser     *string  `json:"sshUser"`
	User        *string  `json:"user"`
	SSHOpts     []string `json:"sshOpts"`
	ProfilePath *string  `json:"profilePath"`
}

type colmenaNode struct {
	TargetHost *string  `json:"targetHost"`
	TargetUser *string  `json:"targetUser"`
	TargetPort *int     `json:"targetPort"`
	Tags       []string `json:"tags"`
}

// Hosts reads the fleet flake declares and picks from it: flake is REF or
// REF#NAME, where NAME picks that node as deploy-rs's `deploy REF#NAME`
// does; on is --on's selection (names, globs, @tags) on top.
func Hosts(ctx context.Context, n nix.CLI, flake, on string) ([]fleet.Host, error) {
	ref, name := split(flake)
	hosts, err := Load(ctx, n, ref)
	if err != nil {
		return nil, err
	}
	if name != "" {
		if hosts, err = fleet.Select(hosts, name); err != nil {
			return nil, phase.Usagef("--flake %s: %v", flake, strings.TrimPrefix(err.Error(), "--on "))
		}
	}
	if hosts, err = fleet.Select(hosts, on); err != nil {
		return nil, phase.Usagef("%v", err)
	}
	return hosts, nil
}

// Load evaluates the fleet the flake ref declares (deploy.nodes,
// colmenaHive); hosts are sorted by name. A flake that declares none, or
// a declaration nixos-via cannot follow, is a *phase.UsageError.
func Load(ctx context.Context, n nix.CLI, ref string) ([]fleet.Host, error) {
	raw, err := n.EvalExprApply(ctx, nix.String(absRef(ref)), hostsNix)
	if err != nil {
		return nil, fmt.Errorf("read the fleet of %s: %w", ref, err)
	}
	var d declared
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("read the fleet of %s: decode: %w", ref, err)
	}
	return d.hosts(ref)
}

func (d declared) hosts(ref string) ([]fleet.Host, error) {
	if d.DeployNodes == nil && d.ColmenaSchema == nil {
		if d.RawColmena {
			return nil, phase.Usagef("flake %s: its colmena output is a raw hive; colmena and nixos-via read the evaluated one: add colmenaHive = colmena.lib.makeHive self.colmena;", ref)
		}
		return nil, phase.Usagef("flake %s declares no fleet (no deploy.nodes, no colmenaHive): give [user@]HOST or NAME=[user@]host pairs", ref)
	}
	if d.ColmenaSchema != nil && d.ColmenaNodes == nil {
		return nil, phase.Usagef("flake %s: colmenaHive (schema %q) is not an evaluated hive (no deploymentConfig): use colmenaHive = colmena.lib.makeHive self.colmena;", ref, *d.ColmenaSchema)
	}
	byName := map[string]*fleet.Host{}
	var hosts []*fleet.Host
	for _, name := range sortedKeys(d.DeployNodes) {
		h, ok, err := d.DeployNodes[name].host(name)
		if err != nil {
			return nil, phase.Usagef("flake %s: deploy.nodes.%s: %v", ref, name, err)
		}
		if ok {
			byName[name] = &h
			hosts = append(hosts, &h)
		}
	}
	for _, name := range sortedKeys(d.ColmenaNodes) {
		c := d.ColmenaNodes[name]
		if h := byName[name]; h != nil {
			h.Tags = append(h.Tags, c.Tags...)
		} else if h, ok := c.host(name); ok {
			hosts = append(hosts, &h)
		}
	}
	if len(hosts) == 0 {
		return nil, phase.Usagef("flake %s: its deploy.nodes and colmenaHive declare no host nixos-via can deploy (a deploy-rs node needs profiles.system, a colmena node a targetHost)", ref)
	}
	out := make([]fleet.Host, len(hosts))
	for i, h := range hosts {
		out[i] = *h
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// host is deploy-rs node name as a fleet.Host; ok is false when the node
// has no system profile.
func (n deployNode) host(name string) (h fleet.Host, ok bool, err error) {
	if !n.HasSystem {
		return h, false, nil
	}
	if n.Hostname == nil || *n.Hostname == "" {
		return h, false, fmt.Errorf("no hostname (deploy-rs requires one)")
	}
	if n.User != nil && *n.User != "root" {
		return h, false, fmt.Errorf("profiles.system.user is %q: the system profile is root's", *n.User)
	}
	if n.ProfilePath != nil && *n.ProfilePath != SystemProfile {
		return h, false, fmt.Errorf("profiles.system.profilePath is %q: nixos-via deploys the system to %s", *n.ProfilePath, SystemProfile)
	}
	h = fleet.Host{Name: name, Addr: *n.Hostname, System: fmt.Sprintf("deploy.nodes.%q.profiles.system.path", name)}
	if n.SSHUser != nil {
		h.User = *n.SSHUser
	}
	if h.Port, h.SSHOptions, err = SSHOpts(n.SSHOpts); err != nil {
		return h, false, err
	}
	return h, true, nil
}

// host is colmena node name as a fleet.Host; ok is false when it has no
// targetHost.
func (c colmenaNode) host(name string) (fleet.Host, bool) {
	if c.TargetHost == nil || *c.TargetHost == "" {
		return fleet.Host{}, false
	}
	h := fleet.Host{Name: name, Addr: *c.TargetHost, Tags: c.Tags,
		System: fmt.Sprintf("colmenaHive.nodes.%q.config.system.build.toplevel", name)}
	if c.TargetUser != nil {
		h.User = *c.TargetUser
	}
	if c.TargetPort != nil {
		h.Port = *c.TargetPort
	}
	return h, true
}

// SSHOpts reads deploy-rs's sshOpts, arguments of OpenSSH's ssh: -p PORT,
// -i FILE, -l USER and -o OPTION become the port and -o options for
// nixos-via's SSH client (a user@ in the destination beats -l, as in
// ssh); -t, -T, -q, -v and -C change nothing nixos-via does and are
// skipped. Any other argument is an error.
func SSHOpts(args []string) (port int, opts []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "-t", "-T", "-q", "-v", "-vv", "-vvv", "-C":
			continue
		}
		if len(a) < 2 || a[0] != '-' || !strings.ContainsRune("pilo", rune(a[1])) {
			return 0, nil, fmt.Errorf("sshOpts %q: nixos-via's SSH client takes -p, -i, -l and -o (and skips -t, -T, -q, -v, -C)", a)
		}
		v := a[2:]
		if v == "" {
			if i+1 == len(args) {
				return 0, nil, fmt.Errorf("sshOpts %q: missing its value", a)
			}
			i++
			v = args[i]
		}
		switch a[1] {
		case 'p':
			if port, err = strconv.Atoi(v); err != nil || port < 1 || port > 65535 {
				return 0, nil, fmt.Errorf("sshOpts -p %q: want a port 1-65535", v)
			}
		case 'i':
			opts = append(opts, "IdentityFile="+v)
		case 'l':
			opts = append(opts, "User="+v)
		case 'o':
			opts = append(opts, v)
		}
	}
	if err := target.CheckSSHOptions(opts); err != nil {
		return 0, nil, fmt.Errorf("sshOpts: %w", err)
	}
	return port, opts, nil
}

// split is REF#NAME's REF and NAME ("" without one).
func split(flake string) (ref, name string) {
	if i := strings.LastIndex(flake, "#"); i >= 0 {
		return flake[:i], flake[i+1:]
	}
	return flake, ""
}

// absRef makes a path flake reference absolute, as builtins.getFlake
// wants it (the nix command line resolves "." itself).
func absRef(ref string) string {
	p, scheme := ref, ""
	if rest, ok := strings.CutPrefix(ref, "path:"); ok {
		p, scheme = rest, "path:"
	} else if strings.Contains(ref, ":") {
		return ref
	}
	if q, _, _ := strings.Cut(p, "?"); !filepath.IsAbs(q) {
		if abs, err := filepath.Abs(p); err == nil {
			return scheme + abs
		}
	}
	return ref
}

// sortedKeys is m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
