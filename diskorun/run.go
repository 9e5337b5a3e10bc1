package diskorun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Options shape the disko phase.
type Options struct {
	Layout *disko.Layout
	Script string      // the layout's script, rendered (disko.Layout.Script)
	Needs  disko.Needs // what the script needs (disko.Layout.Needs)
	// Wipes says the mode destroys the disks first: the run is then
	// recorded in the installer's RAM (see AlreadyApplied).
	Wipes    bool
	KeyFiles []KeyFile // copied to the installer before the script runs
	// ExtraTools are what the steps after the script need on the
	// installer (install.Tools()), checked with the script's own.
	ExtraTools []string
	// Terminal is where the passphrases of Needs.Passphrases are typed;
	// nil when there is none (then there must be no passphrase to ask).
	Terminal *Terminal
	// Prebuilt, when set, is the script to run instead of Layout's
	// (--store-paths); Layout, Script and Needs are then unset.
	Prebuilt *Prebuilt
}

// Terminal is this process's terminal, handed to the script for its
// passphrase prompts.
type Terminal struct {
	In   *os.File  // put in raw mode while the script runs
	Out  io.Writer // the script's output and prompts
	Term string    // $TERM
}

// Run is the disko phase on the installer: it copies the key files
// (mode 0600, over stdin), checks that the installer has everything the
// script and the install after it need (Precheck), runs the script (on
// the terminal when the layout asks for a passphrase), and records the
// applied layout. The wipe itself was listed and confirmed before
// (CheckDisks). A Prebuilt script has its tools in its closure, which is
// copied into the installer's /nix/store before it runs (runPrebuilt); the
// installer is checked for what the install after it needs.
func Run(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) error {
	for _, k := range opts.KeyFiles {
		if err := uploadSecret(ctx, conn, k.Local, k.Remote); err != nil {
			return err
		}
		info(sink, "key file %s copied to the installer (mode 0600)", k.Remote)
	}
	// Nothing is wiped that the installer could not finish.
	step(sink, "checking the installer for what the layout and the install need")
	if err := Precheck(ctx, conn, opts.Requirements()); err != nil {
		return err
	}
	step(sink, "partitioning, formatting and mounting under /mnt")
	run, applied := runScript, opts.Script
	if opts.Prebuilt != nil {
		run, applied = runPrebuilt, opts.Prebuilt.Script
	}
	if err := run(ctx, conn, sink, opts); err != nil {
		return err
	}
	if opts.Wipes {
		// Remember, in the installer's RAM, that this layout is in place,
		// so a run cut later can be repeated without erasing the copy.
		cmd := "mkdir -p /run/nixos-via && echo " + digest(applied) + " > " + marker
		if _, err := conn.Output(ctx, cmd, nil); err != nil {
			return fmt.Errorf("record the applied layout: %w", err)
		}
	}
	return nil
}

// runScript runs the layout's script as root, its lines as events, or on
// the terminal when it asks for passphrases.
func runScript(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) error {
	const name = "disko script"
	args := []string{"--yes-wipe-all-disks"}
	if len(opts.Needs.Passphrases) == 0 {
		_, err := conn.Script(ctx, target.Script{Name: name, Body: opts.Script, Args: args,
			OnLine: func(line string) { info(sink, "%s", line) }})
		return err
	}
	info(sink, "LUKS %s: type the passphrase when asked (twice for a new container); it is not shown and goes nowhere else", strings.Join(opts.Needs.Passphrases, ", "))
	t := opts.Terminal
	if t == nil {
		return fmt.Errorf("%s: no terminal", name)
	}
	return t.run(ctx, conn, target.Script{Name: name, Body: opts.Script, Args: args})
}

// run runs s on the terminal, put in raw mode meanwhile, with the
// terminal's size. The reader of the terminal may stay blocked until the
// next key press after the script ends; nothing reads the terminal after
// the disko phase.
func (t *Terminal) run(ctx context.Context, conn *target.Conn, s target.Script) error {
	fd := int(t.In.Fd())
	state, err := term.MakeRaw(fd)
	if err != nil {
		return fmt.Errorf("%s: put the terminal in raw mode: %w", s.Name, err)
	}
	defer term.Restore(fd, state)
	w, h, _ := term.GetSize(fd)
	s.Terminal = &target.Terminal{In: t.In, Out: t.Out, Term: t.Term, Width: w, Height: h}
	_, err = conn.Script(ctx, s)
	return err
}

// Requirements is what the rendered script and the steps after it need on
// the installer, with the disks' devices.
func (o Options) Requirements() Requirements {
	req := Requirements{Tools: append(append([]string(nil), o.Needs.Tools...), o.ExtraTools...)}
	if o.Layout == nil {
		return req
	}
	for _, k := range o.Needs.KeyFiles {
		req.Files = append(req.Files, File{Path: k.Path, What: k.JSONPath})
	}
	for _, t := range o.Layout.WipeTargets() {
		if n := o.Needs.DiskMinBytes[t.Name]; n > 0 {
			req.Disks = append(req.Disks, Disk{Name: t.Name, Device: t.Device, MinBytes: n})
		}
		if len(o.Needs.Names) > 0 {
			req.Erased = append(req.Erased, t.Device)
		}
	}
	req.Names = o.Needs.Names
	return req
}

// KeysSurviveKexec refuses, before the kexec, a layout whose key files
// are neither given (keys) nor devices: the installer starts from its own
// image, so a file of the old system is not there.
func KeysSurviveKexec(needs disko.Needs, keys []KeyFile) error {
	given := map[string]bool{}
	for _, k := range keys {
		given[k.Remote] = true
	}
	var problems []string
	for _, k := range needs.KeyFiles {
		if !given[k.Path] && !strings.HasPrefix(k.Path, "/dev/") {
			problems = append(problems, fmt.Sprintf("%s: %s is read by the disko script, but the installer starts from its own image and no --disk-encryption-keys %s LOCAL_FILE brings it",
				k.JSONPath, k.Path, k.Path))
		}
	}
	if len(problems) > 0 {
		return &phase.Refusal{Check: phase.Disko, Problems: problems}
	}
	return nil
}

// marker holds the digest of the last layout script the installer ran;
// it lives in RAM, so it is gone after any reboot.
const marker = "/run/nixos-via/disko-applied"

func digest(script string) string {
	sum := sha256.Sum256([]byte(script))
	return hex.EncodeToString(sum[:])
}

// AlreadyApplied says the installer ran this very script since it booted
// and /mnt is still mounted: a resumed run erases nothing again.
func AlreadyApplied(ctx context.Context, conn *target.Conn, script string) bool {
	out, err := conn.Output(ctx, "cat "+marker+" 2>/dev/null; grep -q ' /mnt ' /proc/mounts && echo mounted", nil)
	if err != nil {
		return false
	}
	lines := strings.Fields(string(out))
	return len(lines) == 2 && lines[0] == digest(script) && lines[1] == "mounted"
}

// uploadSecret copies a local file (or pipe) to remote as root with mode
// 0600, over stdin: never on a command line.
func uploadSecret(ctx context.Context, conn *target.Conn, local, remote string) error {
	in, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("--disk-encryption-keys: %w", err)
	}
	defer in.Close()
	dir := filepath.Dir(remote)
	cmd := fmt.Sprintf("umask 077 && mkdir -p %s && cat > %s && chmod 600 %s", target.ShellQuote(dir), target.ShellQuote(remote), target.ShellQuote(remote))
	if _, err := conn.Output(ctx, cmd, in); err != nil {
		return fmt.Errorf("copy key file to %s: %w", remote, err)
	}
	return nil
}

func step(s event.Sink, format string, a ...any) {
	s.Emit(event.Event{Phase: phase.Disko, Kind: event.Step, Msg: fmt.Sprintf(format, a...)})
}

func info(s event.Sink, format string, a ...any) {
	s.Emit(event.Event{Phase: phase.Disko, Kind: event.Info, Msg: fmt.Sprintf(format, a...)})
}
