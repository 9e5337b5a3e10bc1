package install

import (
	"context"
	"fmt"
	"time"

	"github.com/nixos-via/nixos-via/closure"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/target"
)

// AgentPath is where the agent binary lives on the target (tmpfs in the
// installer; removed by the reboot).
const AgentPath = "/run/nixos-via/nixos-via"

// Options shape the install phase.
type Options struct {
	Agent    string         // the local agent binary (AgentBinary)
	Toplevel string         // the system to install
	Closure  []nix.PathInfo // its closure
	NixStore string         // the system's own nix-store (FindNixStore)
	Jobs     int            // parallel streams for the closure copy
	// Substitute names the binary caches the agent fetches what it can of
	// the closure from itself; the rest is streamed (no caches: all).
	Substitute closure.SubstituteOptions
	// Source, when set, gives the closure's NARs instead of the local store
	// (--from).
	Source closure.NARSource
	// ExtraFiles is a local directory whose contents are copied into the
	// root (--extra-files), then Chown applies.
	ExtraFiles   string
	Chown        []Ownership
	CopyHostKeys bool     // give the system the installer's host keys
	KeyFiles     []string // key files on the installer, removed at the end
}

// Run is the install phase on the installer, into DefaultRoot: the agent
// uploaded, the closure copied, registered and set as the system profile,
// the extra files copied and chowned, the host keys copied, the
// bootloader installed, and the key files removed from the installer.
func Run(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) error {
	sink = sinkOr(sink)
	if err := UploadAgent(ctx, conn, sink, opts.Agent, AgentPath); err != nil {
		return err
	}
	report(sink, event.Step, "copying the system closure into %s/nix/store", DefaultRoot)
	start := time.Now()
	stats, err := closure.Send(ctx, conn, opts.Closure, closure.SendOptions{Agent: AgentPath, Root: DefaultRoot, Jobs: opts.Jobs, Sink: sink, Substitute: opts.Substitute, Source: opts.Source})
	if err != nil {
		return fmt.Errorf("copy the closure: %w", err)
	}
	report(sink, event.Info, "%s in %s", SendSummary(stats), time.Since(start).Round(100*time.Millisecond))
	if err := Register(ctx, conn, sink, RegisterOptions{Root: DefaultRoot, NixStore: opts.NixStore, Toplevel: opts.Toplevel, Closure: opts.Closure}); err != nil {
		return err
	}
	if opts.ExtraFiles != "" {
		if err := ExtraFiles(ctx, conn, sink, opts.ExtraFiles, DefaultRoot); err != nil {
			return err
		}
	}
	for _, c := range opts.Chown {
		if err := Chown(ctx, conn, sink, DefaultRoot, c.Path, c.Owner); err != nil {
			return err
		}
	}
	if opts.CopyHostKeys {
		if err := CopyHostKeys(ctx, conn, sink, DefaultRoot); err != nil {
			return err
		}
	}
	if err := InstallBootloader(ctx, conn, sink, DefaultRoot); err != nil {
		return err
	}
	return RemoveKeyFiles(ctx, conn, sink, opts.KeyFiles)
}

// SendSummary says in one line where the closure's paths came from: already
// there, from the caches, or sent (how much, how compressed).
func SendSummary(s closure.SendStats) string {
	if s.Sent == 0 && s.Substituted == 0 {
		return fmt.Sprintf("%d paths: all already there", s.Paths)
	}
	msg := fmt.Sprintf("%d paths: %d already there", s.Paths, s.Present)
	if s.Substituted > 0 {
		msg += fmt.Sprintf(", %d from the binary caches (%s of NAR)", s.Substituted, event.Bytes(int64(s.SubstitutedBytes)))
	}
	if s.Sent > 0 {
		msg += fmt.Sprintf(", %d sent (%s of NAR, %s on the wire, zstd %s)",
			s.Sent, event.Bytes(int64(s.NarBytes)), event.Bytes(int64(s.WireBytes)), s.Compression)
	}
	return msg
}
