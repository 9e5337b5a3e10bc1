package install

import (
	"context"
	"io"

	"github.com/nixos-via/nixos-via/internal/target"
)

// Host is where the install steps run their commands as root: a
// *target.Conn (the installer, over SSH) or target.Local (this machine,
// for a root that is a directory here, as install-to-dir's).
type Host interface {
	Output(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error)
	Script(ctx context.Context, s target.Script) (string, error)
}

var (
	_ Host = (*target.Conn)(nil)
	_ Host = target.Local{}
)
