// Package pipecmd starts a local command that this process talks to over
// the command's stdin and stdout: the xz decompressor the agent feeds, the
// ProxyCommand SSH is spoken through.
package pipecmd

import (
	"fmt"
	"os"
	"os/exec"
)

// Start starts cmd with its stdin and stdout on pipes of our own and
// returns this side's ends: stdin feeds the command, stdout reads what it
// prints. Unlike cmd.StdinPipe and StdoutPipe they are *os.File, so they
// take deadlines, and Wait does not close them: the caller closes both.
// The command's ends are closed here once it started, so a read of stdout
// ends when the command exits and the command reads an end once stdin is
// closed. cmd.Stderr and the rest are the caller's to set. On an error
// nothing is left open.
func Start(cmd *exec.Cmd) (stdin, stdout *os.File, err error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("os.Pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, nil, fmt.Errorf("os.Pipe: %w", err)
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, nil, err
	}
	return inW, outR, nil
}
