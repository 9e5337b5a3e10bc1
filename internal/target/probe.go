package target

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// errKeySeen ends a probe's handshake once the host key is known.
var errKeySeen = errors.New("host key seen")

// ProbeHostKey does an SSH handshake with res's host (directly or through
// its ProxyCommand) just far enough to see its host key, and returns it.
// It logs in as nobody, checks nothing and records nothing: it tells
// whether an SSH server answers there and with which key. The key type is
// the one res.HostKeyAlgorithms asks for first, else the server's pick
// from Go's defaults.
func ProbeHostKey(ctx context.Context, res *Resolved) (ssh.PublicKey, error) {
	addr := res.Addr()
	timeout := res.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := openConn(ctx, dctx, nil, res, addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	defer boundHandshake(dctx, nc)()
	var seen ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: "nixos-via-probe",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			return errKeySeen
		},
		HostKeyAlgorithms: res.HostKeyAlgorithms,
		Timeout:           timeout,
	}
	_, _, _, err = ssh.NewClientConn(nc, addr, cfg)
	if seen != nil {
		return seen, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, &ConnectError{Addr: addr, Err: fmt.Errorf("ssh handshake: %w", err)}
}

// RecordHostKey makes key the only entry for res's host in its first
// known_hosts file: the host, freshly installed, has new keys.
func RecordHostKey(res *Resolved, key ssh.PublicKey) error {
	if len(res.KnownHostsFiles) == 0 {
		return nil
	}
	addr := res.Addr()
	remote, _ := net.ResolveTCPAddr("tcp", addr)
	var r net.Addr = remote
	if remote == nil {
		r = &net.TCPAddr{IP: net.IPv4zero}
	}
	return replaceKnownHost(res.KnownHostsFiles[0], addr, r, key)
}
