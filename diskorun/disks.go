package diskorun

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// CheckDisks makes sure every disk the layout names exists on the host
// and, when the mode wipes, lists what will be erased and asks confirm
// (nil: nobody is asked), before anything is touched.
func CheckDisks(ctx context.Context, conn *target.Conn, sink event.Sink, facts *target.Facts, layout *disko.Layout, wipes bool, confirm func() error) error {
	targets := layout.WipeTargets()
	resolved, missing, err := findDisks(ctx, conn, targets)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		var have []string
		for _, d := range facts.Disks {
			have = append(have, fmt.Sprintf("%s (%s)", d.Path, target.DiskSize(d.SizeBytes)))
		}
		return &phase.Refusal{Check: "disks", Msg: fmt.Sprintf("the layout names %s, which the host does not have; its disks are: %s",
			strings.Join(missing, ", "), orNA(strings.Join(have, ", ")))}
	}
	if !wipes {
		return nil
	}
	step(sink, "the disko phase will ERASE these disks:")
	for _, t := range targets {
		desc := ""
		for _, d := range facts.Disks {
			if d.Path == resolved[t.Device] {
				desc = fmt.Sprintf("%s, %s", target.DiskSize(d.SizeBytes), orNA(d.Model))
				if len(d.Mounted) > 0 {
					desc += ", in use now: " + strings.Join(d.Mounted, ",")
				}
			}
		}
		dev := t.Device
		if r := resolved[t.Device]; r != "" && r != t.Device {
			dev += " -> " + r
		}
		info(sink, "disk.%s: %s (%s)", t.Name, dev, orNA(desc))
	}
	if confirm == nil {
		return nil
	}
	return confirm()
}

// findDisks resolves each target's device on the host (readlink -f), and
// lists those it lacks.
func findDisks(ctx context.Context, conn *target.Conn, targets []disko.WipeTarget) (map[string]string, []string, error) {
	var script strings.Builder
	for _, t := range targets {
		fmt.Fprintf(&script, "d=%s; if [ -b \"$d\" ]; then printf 'ok\\t%%s\\t%%s\\n' \"$d\" \"$(readlink -f \"$d\")\"; else printf 'missing\\t%%s\\n' \"$d\"; fi\n", target.ShellQuote(t.Device))
	}
	out, err := conn.Output(ctx, script.String(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("check the layout's disks on the host: %w", err)
	}
	resolved := map[string]string{}
	var missing []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Split(line, "\t")
		switch {
		case len(fields) == 3 && fields[0] == "ok":
			resolved[fields[1]] = fields[2]
		case len(fields) >= 2 && fields[0] == "missing":
			missing = append(missing, fields[1])
		}
	}
	return resolved, missing, nil
}

func orNA(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
