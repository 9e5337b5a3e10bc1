package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// SSH reaches a VM through its host forward with the OpenSSH client:
// BatchMode, one identity, and a known_hosts file holding only the host
// key the VM must present (StrictHostKeyChecking=yes), so a changed host
// key, e.g. after kexec, fails every command.
type SSH struct {
	User       string
	Port       int
	KeyFile    string // private key, mode 0600
	KnownHosts string
	// vm, when set, makes WaitUp give up as soon as QEMU has exited.
	vm *VM
}

// SSH returns a client for user on the VM that trusts only hostKeyLine
// ("ssh-ed25519 AAAA…") as the VM's host key.
func (v *VM) SSH(user, keyFile, hostKeyLine string) (*SSH, error) {
	fields := strings.Fields(hostKeyLine)
	if len(fields) < 2 {
		return nil, fmt.Errorf("vm: host key %q is not \"type base64\"", hostKeyLine)
	}
	// One file per client, so clients expecting different keys coexist.
	f, err := os.CreateTemp(v.Dir, v.Name+"-known_hosts-")
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	_, err = fmt.Fprintf(f, "[127.0.0.1]:%d %s %s\n", v.SSHPort, fields[0], fields[1])
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	return &SSH{User: user, Port: v.SSHPort, KeyFile: keyFile, KnownHosts: f.Name(), vm: v}, nil
}

// Args returns the ssh arguments before the command. ConnectTimeout comes
// first: for ssh the first value of an option wins.
func (s *SSH) Args(connectTimeout time.Duration) []string {
	return []string{
		"-o", "ConnectTimeout=" + strconv.Itoa(int(connectTimeout.Seconds()+0.5)),
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "ServerAliveInterval=5",
		"-o", "LogLevel=ERROR",
		"-F", "/dev/null",
		"-i", s.KeyFile,
		"-p", strconv.Itoa(s.Port),
		"-l", s.User,
		"127.0.0.1",
	}
}

// Run runs cmd in the guest's login shell; stdin may be nil. It returns
// stdout, and an error with stderr when ssh or the command fails.
func (s *SSH) Run(ctx context.Context, cmd string, stdin io.Reader) (string, error) {
	c := exec.CommandContext(ctx, "ssh", append(s.Args(10*time.Second), "--", cmd)...)
	if stdin != nil {
		c.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	// Close the pipes when ctx ends even if a guest process keeps them open.
	c.WaitDelay = 5 * time.Second
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ssh %s@127.0.0.1:%d %q: %w: %s", s.User, s.Port, cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// WaitUp polls `ssh true` until it succeeds or ctx ends; the error then
// carries the last ssh failure.
func (s *SSH) WaitUp(ctx context.Context) error {
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, 8*time.Second)
		c := exec.CommandContext(actx, "ssh", append(s.Args(2*time.Second), "--", "true")...)
		out, err := c.CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		if strings.Contains(string(out), "REMOTE HOST IDENTIFICATION HAS CHANGED") || strings.Contains(string(out), "Host key verification failed") {
			return fmt.Errorf("ssh %s@127.0.0.1:%d: host key mismatch: %s", s.User, s.Port, strings.TrimSpace(string(out)))
		}
		if s.vm != nil {
			if exited, qerr := s.vm.Exited(); exited {
				return fmt.Errorf("ssh %s@127.0.0.1:%d: VM %s exited (%v); console tail:\n%s", s.User, s.Port, s.vm.Name, qerr, s.vm.ConsoleTail(30))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ssh %s@127.0.0.1:%d not up: %w (last attempt: %v)", s.User, s.Port, ctx.Err(), last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
