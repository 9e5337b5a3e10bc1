package diskorun

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Prebuilt is a disko script built elsewhere (--store-paths DISKO SYSTEM):
// disko's system.build.diskoScript, a store path that is a shell script
// whose tools are in its closure. The disko phase streams the closure into
// the installer's /nix/store (RAM: the installer's root, which has no Nix
// of its own to register them with) and runs the script, as
// nixos-anywhere does with `nix copy` and ssh.
type Prebuilt struct {
	Script  string         // the script's store path
	Closure []nix.PathInfo // its closure (the script among it)
	// Agent is the agent on the installer (install.AgentPath), uploaded
	// before the phase; Jobs its parallel channels.
	Agent string
	Jobs  int
}

// ReadPrebuilt checks that script (symlinks resolved) is a store path and
// an executable file, and reads its closure with the local Nix.
func ReadPrebuilt(ctx context.Context, cli nix.CLI, script string) (*Prebuilt, error) {
	fi, err := os.Stat(script)
	if err != nil {
		return nil, err
	}
	if err := nix.CheckStorePath(script); err != nil {
		return nil, fmt.Errorf("%s is not a store path (%v): give the store path of disko's system.build.diskoScript", script, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%s is not an executable file: give disko's system.build.diskoScript, the script itself", script)
	}
	infos, err := cli.Closure(ctx, script)
	if err != nil {
		return nil, fmt.Errorf("closure of %s: %w", script, err)
	}
	return &Prebuilt{Script: script, Closure: infos}, nil
}

// legacyWipe finds the disks disko's diskoScript erases: its destroy step
// is a loop `for dev in DEVICES; do ... disk-deactivate "$dev"`.
var legacyWipe = regexp.MustCompile(`(?m)^[ \t]*for dev in ([^;\n]*);?[ \t]*\n[ \t]*do\b[^\n]*\n[^\n]*disk-deactivate "\$dev"`)

// PrebuiltWipes are the disks a prebuilt script names in its destroy step,
// as far as its text says (nil when it does not).
func PrebuiltWipes(text string) []string {
	var disks []string
	for _, m := range legacyWipe.FindAllStringSubmatch(text, -1) {
		for _, d := range strings.Fields(m[1]) {
			disks = append(disks, strings.Trim(d, `'"`))
		}
	}
	return disks
}

// ConfirmPrebuilt says, before anything is touched, that the prebuilt
// script will erase disks, names those its text lists, and asks confirm
// (nil: nobody is asked, as for a rendered layout). nixos-anywhere runs
// the script without a word; nixos-via warns, and asks a person at a
// terminal as it does for a layout it renders.
func ConfirmPrebuilt(sink event.Sink, p *Prebuilt, confirm func() error) error {
	text, err := os.ReadFile(p.Script)
	if err != nil {
		return fmt.Errorf("read the disko script: %w", err)
	}
	if disks := PrebuiltWipes(string(text)); len(disks) > 0 {
		step(sink, "the disko phase will ERASE these disks (the prebuilt script %s names them):", p.Script)
		for _, d := range disks {
			info(sink, "%s", d)
		}
	} else {
		step(sink, "the disko phase will ERASE the disks the prebuilt script %s names (its text does not list them in a way nixos-via reads)", p.Script)
	}
	if confirm == nil {
		return nil
	}
	return confirm()
}

// runPrebuilt copies the script's closure into the installer's /nix/store
// (the paths already there are used as they are: an installer with Nix
// has most of them) and runs it as root; on the terminal when there is
// one, where its tools may ask for a LUKS passphrase.
func runPrebuilt(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) error {
	p := opts.Prebuilt
	missing, err := missingPaths(ctx, conn, p.Closure)
	if err != nil {
		return err
	}
	step(sink, "copying the disko script's closure into the installer's /nix/store (%d of %d paths)", len(missing), len(p.Closure))
	if len(missing) > 0 {
		stats, err := closure.Send(ctx, conn, missing, closure.SendOptions{Agent: p.Agent, Root: "/", Jobs: p.Jobs, Sink: sink})
		if err != nil {
			return fmt.Errorf("copy the disko script's closure: %w", err)
		}
		info(sink, "%d paths, %s of NAR", stats.Sent, event.Bytes(int64(stats.NarBytes)))
	}
	step(sink, "running %s", p.Script)
	const name = "disko script"
	body := "exec " + target.ShellQuote(p.Script) + "\n"
	if t := opts.Terminal; t != nil {
		return t.run(ctx, conn, target.Script{Name: name, Body: body})
	}
	_, err = conn.Script(ctx, target.Script{Name: name, Body: body, OnLine: func(line string) { info(sink, "%s", line) }})
	return err
}

// missingPaths are those of infos the installer's /nix/store lacks. A
// path there is complete: Nix and the agent both rename a path into place
// only once it is whole.
func missingPaths(ctx context.Context, conn *target.Conn, infos []nix.PathInfo) ([]nix.PathInfo, error) {
	var list strings.Builder
	for _, info := range infos {
		list.WriteString(info.Path + "\n")
	}
	out, err := conn.Output(ctx, `while read -r p; do [ -e "$p" ] || [ -L "$p" ] && echo "$p"; done; true`, strings.NewReader(list.String()))
	if err != nil {
		return nil, fmt.Errorf("look for the disko script's closure on the installer: %w", err)
	}
	there := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		there[line] = true
	}
	var missing []nix.PathInfo
	for _, info := range infos {
		if !there[info.Path] {
			missing = append(missing, info)
		}
	}
	return missing, nil
}
