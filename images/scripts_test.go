package images

import (
	"os/exec"
	"strings"
	"testing"
)

// The scripts run under dash (Debian's /bin/sh, the provider's shell) and
// busybox sh; both must parse them.
func TestScriptsParse(t *testing.T) {
	scripts := map[string]string{
		"kexec/run":          strings.ReplaceAll(runScript, "@CMDLINE@", "console=ttyS0"),
		"provider /etc/rc":   rcHead + rcDHCP + rcTail,
		"installer /etc/rc":  rcHead + rcRestore + rcDHCP + rcTail,
		"shared mounts":      rcSharedMounts,
		"udhcpc script":      udhcpcScript,
		"helper wrapper":     strings.NewReplacer("@LOADER@", "ld-linux-x86-64.so.2", "@NAME@", "ip").Replace(wrapperScript),
		"broken (must fail)": "if then fi",
	}
	for _, shell := range [][]string{{"dash", "-n"}, {"/bin/busybox", "sh", "-n"}} {
		if _, err := exec.LookPath(shell[0]); err != nil {
			t.Logf("%s not installed: %v", shell[0], err)
			continue
		}
		for name, script := range scripts {
			cmd := exec.Command(shell[0], shell[1:]...)
			cmd.Stdin = strings.NewReader(script)
			out, err := cmd.CombinedOutput()
			if wantErr := strings.Contains(name, "must fail"); (err != nil) != wantErr {
				t.Errorf("%s: %s: err = %v (%s), want error %v", strings.Join(shell, " "), name, err, out, wantErr)
			}
		}
	}
	if !strings.Contains(runScript, "machine will boot into nixos") {
		t.Errorf("run lacks the marker line nixos-anywhere waits for")
	}
}
