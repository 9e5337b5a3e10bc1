package cli

import (
	"strings"
	"testing"
)

// TestStoppedInstallSaysHowToGoOn: an install that fails after it began
// on the host prints, after the error, where the host is and the command
// line that goes on: the one given.
func TestStoppedInstallSaysHowToGoOn(t *testing.T) {
	// No key and no agent: the first connection fails, nothing changed.
	args := []string{"--phases", "kexec", "--timeout-connect", "5s", "root@127.0.0.1", "-p", "1"}
	code, _, stderr := runCLI(t, map[string]string{"SSH_AUTH_SOCK": ""}, args...)
	want := "nixos-via: ssh root@127.0.0.1: no credentials: give -i KEY, run an ssh-agent, or use --env-password with SSHPASS\n" +
		"The host now: nothing on the host was changed: it still runs its original system.\n" +
		"To go on from here once the cause is fixed, run: nixos-via " + strings.Join(args, " ") + "\n"
	if code != ExitFailure || !strings.HasSuffix(stderr, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit %d, ending in:\n%s", code, stderr, ExitFailure, want)
	}
}
