// Package target is one SSH connection to one host: dialling (ssh_config,
// ProxyJump, ProxyCommand, agent, keys, password, keyboard-interactive),
// host-key checking (known_hosts, accept-new, pinned keys, the host's key
// set), running commands with sudo/doas,
// uploads, waiting for a host to go down or come up, and the facts probe.
package target

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
	"golang.org/x/crypto/ssh"
)

// StrictHostKeyChecking modes, as OpenSSH names them.
const (
	StrictYes       = "yes"        // the host must already be known
	StrictAcceptNew = "accept-new" // record an unknown host, refuse a changed key
	StrictNo        = "no"         // accept any key (loudly)
)

// Options says how to reach one host. Zero values mean OpenSSH's defaults,
// filled in from ~/.ssh/config by Resolve.
type Options struct {
	// Destination as the user typed it: host, user@host, an ssh_config alias,
	// or an IPv6 literal (with or without brackets).
	Destination string
	User        string
	Port        int
	// IdentityFiles are private key files tried in order.
	IdentityFiles []string
	// Signers are in-memory keys, offered before every other key (the
	// run's throwaway key for the installer, see kexec.AccessKey). They
	// are never written anywhere, logged or put on a command line, and are
	// not offered to ProxyJump hops.
	Signers []ssh.Signer
	// Password is used for password and keyboard-interactive auth (from
	// SSHPASS with --env-password). It is a secret: never logged.
	Password string
	// AgentSocket is the ssh-agent socket (SSH_AUTH_SOCK); empty disables the agent.
	AgentSocket string
	// KnownHostsFiles are read for host keys; new keys are appended to the first.
	KnownHostsFiles []string
	// StrictHostKeyChecking is StrictYes, StrictAcceptNew (default) or StrictNo.
	StrictHostKeyChecking string
	// HostKeyPin and HostKeyPins, when set, are the only accepted host key
	// fingerprints (SHA256:... as ssh-keygen -l prints it); a key matching
	// any of them is accepted (--host-key, repeatable).
	HostKeyPin  string
	HostKeyPins []string
	// PinnedKeys and PinnedKey, when set, are the only accepted host keys
	// (after kexec: the host's key set as read before). PinSource names
	// them in errors.
	PinnedKeys []ssh.PublicKey
	PinnedKey  ssh.PublicKey
	PinSource  string
	// HostKeyAlgorithms, when set, are the host key algorithms asked for,
	// in order (-o HostKeyAlgorithms, as OpenSSH spells them). Unset, the
	// algorithms of the keys known_hosts has for the host are asked for.
	HostKeyAlgorithms []string
	// ProxyCommand, when set, is run by /bin/sh (with %h, %p, %r, %n and
	// %% expanded as OpenSSH does) and SSH is spoken over its stdin and
	// stdout instead of a TCP connection. "none" disables one from ssh_config.
	ProxyCommand string
	// ReplaceKnownHost accepts whatever key the host presents and makes it
	// the host's only entry in the first known_hosts file (a freshly
	// installed system has new host keys). Warn says so.
	ReplaceKnownHost bool
	// ConnectTimeout bounds the TCP connect and SSH handshake of each hop.
	ConnectTimeout time.Duration
	// ServerAliveInterval, when non-zero, sends keepalives on the connection.
	ServerAliveInterval time.Duration
	// ProxyJump is a comma-separated chain of [user@]host[:port] hops, or "none".
	ProxyJump string
	// SSHConfigFile is the ssh_config to read; empty means ~/.ssh/config,
	// "none" reads none.
	SSHConfigFile string
	// SSHOptions are OpenSSH -o options (Key=Value or "Key Value"); they win
	// over the ssh_config file, as on the ssh command line.
	SSHOptions []string
	// Prompt asks the user for a secret (key passphrase, password); nil when
	// there is no terminal. echo says whether the answer may be shown.
	Prompt func(question string, echo bool) (string, error)
	// SudoPassword is fed to sudo on stdin when the login user needs one.
	SudoPassword string
	// Warn receives warnings meant for the user (e.g. host key checking off).
	Warn func(msg string)
	// Trace, when set, is told every command run on the host (its first
	// line; commands never carry secrets, those go on stdin), for --debug.
	Trace func(cmd string)
}

// Resolved is where and how to connect once ssh_config and -o options have
// been applied.
type Resolved struct {
	Alias    string // the name as typed (ssh_config Host match)
	HostName string // the address to dial
	User     string
	Port     int
	Options
}

// Addr is host:port for dialling.
func (r *Resolved) Addr() string {
	return net.JoinHostPort(r.HostName, strconv.Itoa(r.Port))
}

// SplitDestination splits [user@]host[:port] forms. A bare IPv6 literal has
// no port; [v6]:port and host:port do.
func SplitDestination(dest string) (user, host string, port int, err error) {
	if dest == "" {
		return "", "", 0, fmt.Errorf("empty destination")
	}
	if i := strings.LastIndex(dest, "@"); i >= 0 {
		user, dest = dest[:i], dest[i+1:]
		if user == "" {
			return "", "", 0, fmt.Errorf("destination %q: empty user before @", dest)
		}
	}
	if strings.HasPrefix(dest, "[") {
		end := strings.Index(dest, "]")
		if end < 0 {
			return "", "", 0, fmt.Errorf("destination %q: missing ]", dest)
		}
		host = dest[1:end]
		rest := dest[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", "", 0, fmt.Errorf("destination %q: unexpected %q after ]", dest, rest)
			}
			port, err = parsePort(rest[1:])
			if err != nil {
				return "", "", 0, fmt.Errorf("destination %q: %w", dest, err)
			}
		}
	} else if strings.Count(dest, ":") == 1 {
		h, p, _ := strings.Cut(dest, ":")
		host = h
		port, err = parsePort(p)
		if err != nil {
			return "", "", 0, fmt.Errorf("destination %q: %w", dest, err)
		}
	} else {
		host = dest // a name, IPv4 or a bare IPv6 literal
	}
	if host == "" {
		return "", "", 0, fmt.Errorf("destination %q: empty host", dest)
	}
	return user, host, port, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return p, nil
}

// sshOption is one -o Key=Value pair with the key lower-cased.
type sshOption struct{ key, value string }

// ParseSSHOption parses an OpenSSH -o option ("Key=Value" or "Key Value").
func ParseSSHOption(s string) (key, value string, err error) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "= \t")
	if i <= 0 {
		return "", "", fmt.Errorf("ssh option %q: want Key=Value", s)
	}
	key = s[:i]
	value = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(s[i:]), "="))
	if value == "" {
		return "", "", fmt.Errorf("ssh option %q: missing value", s)
	}
	return key, value, nil
}

// supportedOptions are the -o keys we honour (lower-case). Others are
// refused so that a user is never surprised by an option silently ignored.
var supportedOptions = map[string]bool{
	"port": true, "user": true, "identityfile": true, "userknownhostsfile": true,
	"stricthostkeychecking": true, "connecttimeout": true, "serveraliveinterval": true,
	"proxyjump": true, "hostname": true, "identitiesonly": true, "batchmode": true,
	"loglevel": true, "serveralivecountmax": true, "passwordauthentication": true,
	"controlmaster": true, "controlpath": true, "controlpersist": true, "compression": true,
	"pubkeyacceptedkeytypes": true, "hostkeyalgorithms": true, "globalknownhostsfile": true,
	"proxycommand": true,
}

// ignoredOptions are accepted for compatibility but have no effect here
// (this program keeps one connection and never multiplexes via a socket).
var ignoredOptions = map[string]bool{
	"identitiesonly": true, "batchmode": true, "loglevel": true, "serveralivecountmax": true,
	"controlmaster": true, "controlpath": true, "controlpersist": true, "compression": true,
	"pubkeyacceptedkeytypes": true, "globalknownhostsfile": true, "passwordauthentication": true,
}

// CheckSSHOptions validates -o options without resolving anything, so that
// usage errors surface before any connection.
func CheckSSHOptions(opts []string) error {
	for _, o := range opts {
		k, v, err := ParseSSHOption(o)
		if err != nil {
			return err
		}
		lk := strings.ToLower(k)
		if !supportedOptions[lk] {
			return fmt.Errorf("ssh option %q is not supported (supported: Port, User, HostName, IdentityFile, UserKnownHostsFile, StrictHostKeyChecking, HostKeyAlgorithms, ConnectTimeout, ServerAliveInterval, ProxyJump, ProxyCommand)", k)
		}
		switch lk {
		case "stricthostkeychecking":
			if _, err := normalizeStrict(v); err != nil {
				return err
			}
		case "hostkeyalgorithms":
			if _, err := ParseHostKeyAlgorithms(v); err != nil {
				return err
			}
		case "proxycommand":
			if _, err := expandProxyCommand(v, "h", "n", 22, "r"); err != nil {
				return err
			}
		}
	}
	return nil
}

func normalizeStrict(v string) (string, error) {
	switch strings.ToLower(v) {
	case "yes":
		return StrictYes, nil
	case "accept-new", "ask": // no prompt here: ask behaves like accept-new
		return StrictAcceptNew, nil
	case "no", "off":
		return StrictNo, nil
	}
	return "", fmt.Errorf("StrictHostKeyChecking %q: want yes, accept-new or no", v)
}

// Resolve applies the destination, -o options and ssh_config (in OpenSSH's
// precedence: command line first, then the config file, then defaults).
func (o Options) Resolve(home string) (*Resolved, error) {
	user, host, port, err := SplitDestination(o.Destination)
	if err != nil {
		return nil, err
	}
	r := &Resolved{Alias: host, HostName: host, Options: o}
	if user != "" {
		r.User = user
	} else {
		r.User = o.User
	}
	if port != 0 {
		r.Port = port
	} else {
		r.Port = o.Port
	}
	r.IdentityFiles = append([]string(nil), o.IdentityFiles...)
	r.KnownHostsFiles = append([]string(nil), o.KnownHostsFiles...)

	// -o options come before the config file: the first value wins in OpenSSH.
	st := &resolving{hostKeyAlgosSet: len(r.HostKeyAlgorithms) > 0,
		// ProxyJump and ProxyCommand exclude each other: the first one given wins.
		proxySet: r.ProxyJump != "" || r.ProxyCommand != ""}
	for _, s := range o.SSHOptions {
		k, v, err := ParseSSHOption(s)
		if err != nil {
			return nil, err
		}
		if err := st.option(r, home, k, v); err != nil {
			return nil, err
		}
	}
	cfg, err := loadSSHConfig(o.SSHConfigFile, home)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		if err := st.config(r, home, cfg); err != nil {
			return nil, err
		}
	}
	st.defaults(r, home)
	return r, nil
}

// resolving is what Resolve has seen set so far: the first value wins.
type resolving struct {
	hostNameOpt     string
	hostKeyAlgosSet bool
	proxySet        bool
}

// option applies one -o option K=V.
func (st *resolving) option(r *Resolved, home, k, v string) error {
	var err error
	switch strings.ToLower(k) {
	case "port":
		if r.Port == 0 {
			if r.Port, err = parsePort(v); err != nil {
				return fmt.Errorf("ssh option Port: %w", err)
			}
		}
	case "user":
		if r.User == "" {
			r.User = v
		}
	case "hostname":
		if st.hostNameOpt == "" {
			st.hostNameOpt = v
		}
	case "identityfile":
		r.IdentityFiles = append(r.IdentityFiles, expandHome(v, home))
	case "userknownhostsfile":
		for _, f := range strings.Fields(v) {
			r.KnownHostsFiles = append(r.KnownHostsFiles, expandHome(f, home))
		}
	case "stricthostkeychecking":
		if r.StrictHostKeyChecking == "" {
			if r.StrictHostKeyChecking, err = normalizeStrict(v); err != nil {
				return err
			}
		}
	case "connecttimeout":
		if r.ConnectTimeout == 0 {
			secs, err := strconv.Atoi(v)
			if err != nil || secs < 0 {
				return fmt.Errorf("ssh option ConnectTimeout %q: want seconds", v)
			}
			r.ConnectTimeout = time.Duration(secs) * time.Second
		}
	case "serveraliveinterval":
		if r.ServerAliveInterval == 0 {
			secs, err := strconv.Atoi(v)
			if err != nil || secs < 0 {
				return fmt.Errorf("ssh option ServerAliveInterval %q: want seconds", v)
			}
			r.ServerAliveInterval = time.Duration(secs) * time.Second
		}
	case "proxyjump":
		if !st.proxySet {
			r.ProxyJump, st.proxySet = v, true
		}
	case "proxycommand":
		if !st.proxySet {
			r.ProxyCommand, st.proxySet = v, true
		}
	case "hostkeyalgorithms":
		if !st.hostKeyAlgosSet {
			if r.HostKeyAlgorithms, err = ParseHostKeyAlgorithms(v); err != nil {
				return err
			}
			st.hostKeyAlgosSet = true
		}
	default:
		if !ignoredOptions[strings.ToLower(k)] {
			return fmt.Errorf("ssh option %q is not supported", k)
		}
	}
	return nil
}

// config fills in from ssh_config what the options left unset.
func (st *resolving) config(r *Resolved, home string, cfg *ssh_config.Config) error {
	o := r.Options
	var err error
	get := func(key string) string {
		v, _ := cfg.Get(r.Alias, key)
		return v
	}
	if st.hostNameOpt == "" {
		if hn := get("HostName"); hn != "" {
			st.hostNameOpt = strings.ReplaceAll(hn, "%h", r.Alias)
		}
	}
	if r.User == "" {
		r.User = get("User")
	}
	if r.Port == 0 {
		if p := get("Port"); p != "" {
			if r.Port, err = parsePort(p); err != nil {
				return fmt.Errorf("ssh_config Port for %s: %w", r.Alias, err)
			}
		}
	}
	if ids, _ := cfg.GetAll(r.Alias, "IdentityFile"); len(ids) > 0 {
		for _, id := range ids {
			// ssh_config returns the package default (~/.ssh/identity)
			// when nothing is set; keep only files that exist.
			p := expandHome(id, home)
			if _, err := os.Stat(p); err == nil {
				r.IdentityFiles = append(r.IdentityFiles, p)
			}
		}
	}
	if f := get("UserKnownHostsFile"); f != "" && len(o.KnownHostsFiles) == 0 && !hasOption(o.SSHOptions, "userknownhostsfile") {
		for _, p := range strings.Fields(f) {
			r.KnownHostsFiles = append(r.KnownHostsFiles, expandHome(p, home))
		}
	}
	if r.StrictHostKeyChecking == "" {
		if v := get("StrictHostKeyChecking"); v != "" {
			if r.StrictHostKeyChecking, err = normalizeStrict(v); err != nil {
				return fmt.Errorf("ssh_config for %s: %w", r.Alias, err)
			}
		}
	}
	if !st.proxySet {
		if r.ProxyJump = get("ProxyJump"); r.ProxyJump == "" {
			r.ProxyCommand = get("ProxyCommand")
		}
	}
	if !st.hostKeyAlgosSet {
		if v := get("HostKeyAlgorithms"); v != "" {
			if r.HostKeyAlgorithms, err = ParseHostKeyAlgorithms(v); err != nil {
				return fmt.Errorf("ssh_config for %s: %w", r.Alias, err)
			}
		}
	}
	if r.ConnectTimeout == 0 {
		if v := get("ConnectTimeout"); v != "" {
			if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
				r.ConnectTimeout = time.Duration(secs) * time.Second
			}
		}
	}
	return nil
}

// defaults fills in what neither the options nor ssh_config set.
func (st *resolving) defaults(r *Resolved, home string) {
	if st.hostNameOpt != "" {
		r.HostName = st.hostNameOpt
	}
	if r.User == "" {
		r.User = "root"
	}
	if r.Port == 0 {
		r.Port = 22
	}
	if len(r.KnownHostsFiles) == 0 {
		r.KnownHostsFiles = []string{filepath.Join(home, ".ssh", "known_hosts")}
	}
	if r.StrictHostKeyChecking == "" {
		r.StrictHostKeyChecking = StrictAcceptNew
	}
	if r.ConnectTimeout == 0 {
		r.ConnectTimeout = 10 * time.Second
	}
	if strings.EqualFold(r.ProxyJump, "none") {
		r.ProxyJump = ""
	}
	if strings.EqualFold(r.ProxyCommand, "none") {
		r.ProxyCommand = ""
	}
}

func hasOption(opts []string, key string) bool {
	for _, s := range opts {
		if k, _, err := ParseSSHOption(s); err == nil && strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

func loadSSHConfig(file, home string) (*ssh_config.Config, error) {
	if file == "none" {
		return nil, nil
	}
	if file == "" {
		file = filepath.Join(home, ".ssh", "config")
	}
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open ssh config: %w", err)
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("parse ssh config %s: %w", file, err)
	}
	return cfg, nil
}
