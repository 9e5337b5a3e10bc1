// Package hwconfig is the hardware-config step of an install
// (--generate-hardware-config TOOL PATH): after kexec, run nixos-facter or
// nixos-generate-config as root on the host, write what it prints to a
// local file (replaced only when the tool succeeded) and let git see it,
// so that the configuration evaluated next can import it. Its failures
// leave the host in the installer with its disks untouched.
package hwconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/tail"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Options say which tool writes which file.
type Options struct {
	Tool string // nixos-facter or nixos-generate-config
	Path string // the local file
}

// Run is the step: generate on the host, write locally, let git see the
// file. A failed git add is a warning, not a failure.
func Run(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) error {
	report(sink, event.Step, "running %s on the host, writing %s", opts.Tool, opts.Path)
	n, err := Generate(ctx, conn, opts.Tool, opts.Path)
	if err != nil {
		return err
	}
	report(sink, event.Info, "%s: %d bytes", opts.Path, n)
	added, err := GitIntentToAdd(ctx, opts.Path)
	if err != nil {
		sink.Emit(event.Event{Kind: event.Warn, Msg: fmt.Sprintf("%v: a flake in this git repository may not see the file", err)})
	} else if added {
		report(sink, event.Info, "git add --intent-to-add %s (so the flake sees it)", opts.Path)
	}
	return nil
}

func report(s event.Sink, kind event.Kind, format string, a ...any) {
	s.Emit(event.Event{Phase: phase.HardwareConfig, Kind: kind, Msg: fmt.Sprintf(format, a...)})
}

func orNA(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Command is what runs on the target for each backend of
// --generate-hardware-config; its stdout is the file. Filesystems come
// from the disko layout, so nixos-generate-config leaves them out.
func Command(tool string) (string, error) {
	switch tool {
	case "nixos-facter":
		return "nixos-facter", nil
	case "nixos-generate-config":
		return "nixos-generate-config --show-hardware-config --no-filesystems", nil
	}
	return "", phase.Usagef("--generate-hardware-config %q: want nixos-facter or nixos-generate-config", tool)
}

// Check refuses, before anything runs, a tool Command does not know and
// an empty path (--generate-hardware-config TOOL PATH).
func (o Options) Check() error {
	if _, err := Command(o.Tool); err != nil {
		return err
	}
	if o.Path == "" {
		return phase.Usagef("--generate-hardware-config %s: empty path", o.Tool)
	}
	return nil
}

// PreparePath creates the parent directories of path and
// checks that a file can be created there, before anything on the host
// is touched.
func PreparePath(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return phase.Usagef("--generate-hardware-config: %v", err)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return phase.Usagef("--generate-hardware-config: %s is a directory", path)
	}
	probe, err := os.CreateTemp(dir, "."+filepath.Base(path)+".nixos-via-*")
	if err != nil {
		return phase.Usagef("--generate-hardware-config: cannot write into %s: %v", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

// Generate runs the backend tool as root on the target and
// writes its stdout to the local path: into a temporary file beside it,
// renamed over path only when the tool succeeded and printed something,
// so a failure leaves an existing file as it was. It returns the size.
func Generate(ctx context.Context, conn *target.Conn, tool, path string) (int64, error) {
	cmd, err := Command(tool)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".nixos-via-*")
	if err != nil {
		return 0, fmt.Errorf("create a temporary file beside %s: %w", path, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	host := conn.Resolved().HostName
	stderr := tail.New(2048)
	if err := conn.Run(ctx, cmd, nil, tmp, stderr); err != nil {
		return 0, toolError(tool, host, err, stderr.String())
	}
	st, err := tmp.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", tmp.Name(), err)
	}
	if st.Size() == 0 {
		return 0, fmt.Errorf("%s on %s: printed nothing (stderr: %s); %s left as it was", tool, host, orNA(strings.TrimSpace(stderr.String())), path)
	}
	if err := commitFile(tmp, path); err != nil {
		return 0, err
	}
	committed = true
	return st.Size(), nil
}

// toolError phrases a failed run of tool as the failing call. Exit status
// 127 is the shell's "command not found".
func toolError(tool, host string, err error, stderr string) error {
	var ee *target.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("%s on %s: %w", tool, host, err)
	}
	tail := strings.TrimSpace(stderr)
	if ee.Status == 127 {
		return fmt.Errorf("%s on %s: not found: the installer image lacks %s (nixos-via does not fetch it with `nix shell nixpkgs#%s`, which needs internet on the target); "+
			"use an installer that has it (the nixos-images kexec tarballs do), or the other backend", tool, host, tool, tool)
	}
	what := fmt.Sprintf("exit %d", ee.Status)
	if ee.Signal != "" {
		what = "killed by signal " + ee.Signal
	}
	if tail != "" {
		what += ": " + tail
	}
	return fmt.Errorf("%s on %s: %s", tool, host, what)
}

// commitFile makes tmp (written, still open) the file path: flushed to
// disk, with path's mode when it exists (0644 otherwise), renamed in one
// step.
func commitFile(tmp *os.File, path string) error {
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// GitIntentToAdd runs `git add --intent-to-add --force path` when path is
// inside a git work tree, as nixos-anywhere does: a flake in a git
// repository sees only files git knows about. It reports whether it
// added the file; without git, or outside a work tree, it does nothing.
func GitIntentToAdd(ctx context.Context, path string) (bool, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return false, nil
	}
	dir := filepath.Dir(path)
	out, err := exec.CommandContext(ctx, git, "-C", dir, "rev-parse", "--is-inside-work-tree").Output()
	if err != nil || strings.TrimSpace(string(out)) != "true" {
		return false, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	if msg, err := exec.CommandContext(ctx, git, "-C", dir, "add", "--intent-to-add", "--force", "--", abs).CombinedOutput(); err != nil {
		return false, fmt.Errorf("git add --intent-to-add --force %s: %w: %s", path, err, strings.TrimSpace(string(msg)))
	}
	return true, nil
}
