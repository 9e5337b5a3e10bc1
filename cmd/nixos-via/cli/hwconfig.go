package cli

import (
	"context"

	"github.com/nixos-via/nixos-via/hwconfig"
)

// hardwareConfig is the hardware-config step of the flow (hwconfig.Run).
func (f *flow) hardwareConfig(ctx context.Context) error {
	return hwconfig.Run(ctx, f.conn, f.ui, hwconfig.Options{Tool: f.o.GenerateHWConfig.Tool, Path: f.o.GenerateHWConfig.Path})
}
