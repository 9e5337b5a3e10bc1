package disko

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ttyShells are the shells the script must run under that are installed.
func ttyShells(t *testing.T) [][]string {
	var out [][]string
	for _, sh := range [][]string{{"sh"}, {"dash"}, {"bash"}, {"busybox", "sh"}} {
		if _, err := exec.LookPath(sh[0]); err == nil {
			out = append(out, sh)
		}
	}
	if len(out) == 0 {
		t.Skip("no shell installed")
	}
	return out
}

// ttySnippets are the two places the script talks to the terminal: the
// destroy confirmation (rendered for a disk that does not exist, so that
// nothing could be wiped even if it went on) and a LUKS passphrase prompt.
func ttySnippets(t *testing.T) map[string]string {
	l, err := Parse([]byte(`{"disk":{"x":{"type":"disk","device":"/dev/disk/by-id/nixos-via-tty-test-no-such-disk","content":{"type":"gpt","partitions":{"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	destroy, err := l.Script(ModeDestroy, RenderOptions{RootMountpoint: filepath.Join(t.TempDir(), "mnt")})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"confirm":    destroy,
		"passphrase": "#!/bin/sh\nset -eu\n" + prelude + "disko_pw=$(disko_password crypted)\nprintf 'got passphrase <%s>\\n' \"$disko_pw\"\n",
	}
}

func runTTYScript(t *testing.T, argv []string, stdin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "DISKO_DEVICE_TIMEOUT=0")
	out, _ := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%v timed out:\n%s", argv, out)
	}
	return string(out)
}

// Without a controlling terminal (setsid), /dev/tty exists and looks
// readable but cannot be opened: the script must stop with its own message
// instead of the shell's "cannot create /dev/tty".
func TestNoTerminalStopsCleanly(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid is not installed")
	}
	if _, err := os.Stat("/dev/tty"); err != nil {
		t.Skip("no /dev/tty on this machine")
	}
	want := map[string]string{
		"confirm":    "disko: error: no terminal to confirm on; pass --yes-wipe-all-disks",
		"passphrase": "disko: error: LUKS crypted needs a passphrase but there is no terminal",
	}
	dir := t.TempDir()
	for name, script := range ttySnippets(t) {
		path := filepath.Join(dir, name+".sh")
		if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, sh := range ttyShells(t) {
			t.Run(name+"/"+strings.Join(sh, "-"), func(t *testing.T) {
				got := runTTYScript(t, append(append([]string{"setsid", "-w"}, sh...), path), "yes\n")
				if !strings.Contains(got, want[name]) {
					t.Errorf("output:\n%s\nwant it to contain %q", got, want[name])
				}
				for _, bad := range []string{"cannot create", "cannot open", "No such device", "got passphrase", "Type yes"} {
					if strings.Contains(got, bad) {
						t.Errorf("output:\n%s\nwant no %q", got, bad)
					}
				}
			})
		}
	}
}

// Under a terminal (a pty made by util-linux script) the same snippets
// read from it: the confirmation gets "no" and stops as not confirmed,
// the passphrase is read without echo.
func TestTerminalPromptsRead(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("util-linux script is not installed")
	}
	tests := []struct {
		snippet, prompt, input, want string
	}{
		{"confirm", "Type yes to continue: ", "no\n", "disko: error: not confirmed"},
		{"passphrase", "Passphrase for crypted: ", "s3cret pass\n", "got passphrase <s3cret pass>"},
	}
	dir := t.TempDir()
	snippets := ttySnippets(t)
	for _, tt := range tests {
		path := filepath.Join(dir, tt.snippet+".sh")
		if err := os.WriteFile(path, []byte(snippets[tt.snippet]), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, sh := range ttyShells(t) {
			t.Run(tt.snippet+"/"+strings.Join(sh, "-"), func(t *testing.T) {
				// setsid first, so that script's pty becomes the only
				// controlling terminal the snippet can have.
				got := runOnPty(t, []string{"setsid", "-w", "script", "-qec", strings.Join(sh, " ") + " " + path, "/dev/null"}, tt.prompt, tt.input)
				if !strings.Contains(got, tt.want) {
					t.Errorf("output:\n%s\nwant it to contain %q", got, tt.want)
				}
				if strings.Contains(got, "no terminal") {
					t.Errorf("output:\n%s\nthe script found no terminal under a pty", got)
				}
				if tt.snippet == "passphrase" && strings.Count(got, "s3cret") != 1 {
					t.Errorf("output:\n%s\nthe passphrase was echoed", got)
				}
			})
		}
	}
}

// runOnPty runs argv (util-linux script around the snippet) and types
// input once prompt has appeared, as a user would: typed ahead, the pty
// would echo it before the snippet turned echo off.
func runOnPty(t *testing.T, argv []string, prompt, input string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "DISKO_DEVICE_TIMEOUT=0")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var out strings.Builder
	typed := false
	buf := make([]byte, 4096)
	for {
		n, err := pr.Read(buf)
		out.Write(buf[:n])
		if !typed && strings.Contains(out.String(), prompt) {
			typed = true
			if _, err := io.WriteString(stdin, input); err != nil {
				t.Errorf("typing: %v", err)
			}
		}
		if err != nil {
			break
		}
	}
	stdin.Close()
	_ = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("%v timed out:\n%s", argv, out.String())
	}
	if !typed {
		t.Errorf("no prompt %q in:\n%s", prompt, out.String())
	}
	return out.String()
}
