package reboot

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRebootScript runs Run's reboot script with fake reboot and sync
// commands first on PATH that log their calls: reboot, then reboot -f only
// when reboot failed (at once) or the host is still up after the deadline.
// "down" is a host whose reboot works: its shutdown ends the script.
func TestRebootScript(t *testing.T) {
	bin := t.TempDir()
	write(t, filepath.Join(bin, "sync"), "#!/bin/sh\necho sync >> \"$LOG\"\n", 0o755)
	write(t, filepath.Join(bin, "reboot"), `#!/bin/sh
echo "reboot $*" | sed 's/ $//' >> "$LOG"
[ "$1" = -f ] && exit 0
case $HOST in
fail) echo "Failed to talk to init daemon." >&2; exit 1 ;;
down) kill -TERM $PPID ;;
esac
exit 0
`, 0o755)
	const force = 4 * time.Second // well above what the fast cases take on a loaded machine
	for _, tc := range []struct {
		host      string
		wantCalls []string
		wantSlow  bool // reboot -f only after the deadline
	}{
		{"down", []string{"sync", "reboot"}, false},
		{"stays up", []string{"sync", "reboot", "sync", "reboot -f"}, true},
		{"fail", []string{"sync", "reboot", "sync", "reboot -f"}, false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			cmd := exec.CommandContext(testCtx(t), "sh", "-c", rebootScript(0, force))
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "LOG="+log, "HOST="+tc.host)
			start := time.Now()
			cmd.Run() // "down" ends it with SIGTERM
			took := time.Since(start)
			b, _ := os.ReadFile(log)
			if got, want := strings.Split(strings.TrimSpace(string(b)), "\n"), tc.wantCalls; !slices.Equal(got, want) {
				t.Errorf("calls %q, want %q", got, want)
			}
			if slow := took >= force; slow != tc.wantSlow {
				t.Errorf("took %s: after the %s deadline: %v, want %v", took, force, slow, tc.wantSlow)
			}
		})
	}
}

func TestForceAfter(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{15 * time.Minute, time.Minute},
		{90 * time.Second, 30 * time.Second},
		{6 * time.Second, 5 * time.Second},
		{0, 5 * time.Second},
	} {
		if got := forceAfter(tc.timeout); got != tc.want {
			t.Errorf("forceAfter(%s) = %s, want %s", tc.timeout, got, tc.want)
		}
	}
	if got, want := seconds(1500*time.Millisecond), int64(2); got != want {
		t.Errorf("seconds(1.5s) = %d, want %d", got, want)
	}
}
