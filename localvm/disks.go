package localvm

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nixos-via/nixos-via/disko"
)

// Sizing of the blank disks: a layout's fixed sizes plus Slack, never
// less than MinDiskBytes. Images are sparse, so generous sizes cost
// nothing until written.
const (
	Slack        = 4 << 30
	MinDiskBytes = 8 << 30
)

// esp is the partition type GUID of an EFI system partition.
const esp = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"

// DiskSpec is one blank disk made for a layout's disk.
type DiskSpec struct {
	Attr   string // disk.<Attr> in the layout
	Device string // the device the layout names
	Serial string // virtio serial, for /dev/disk/by-id/virtio-<Serial> devices
	Size   int64  // bytes
}

// Disks lists the disks to make for l, in the order QEMU attaches them:
// /dev/vdX devices in letter order first, so each gets the name the
// layout expects; needs is l.Needs(...).DiskMinBytes.
func Disks(l *disko.Layout, needs map[string]int64) ([]DiskSpec, error) {
	var out []DiskSpec
	for _, d := range l.Disks {
		s := DiskSpec{Attr: d.Attr, Device: d.Device, Size: max(needs[d.Attr]+Slack, MinDiskBytes)}
		switch {
		case strings.HasPrefix(d.Device, "/dev/disk/by-id/virtio-"):
			s.Serial = strings.TrimPrefix(d.Device, "/dev/disk/by-id/virtio-")
		case strings.HasPrefix(d.Device, "/dev/vd"):
		default:
			return nil, fmt.Errorf("disk.%s: device %s: a VM test needs /dev/vdX or /dev/disk/by-id/virtio-SERIAL", d.Attr, d.Device)
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	if err := checkOrder(out); err != nil {
		return nil, err
	}
	return out, nil
}

// rank orders /dev/vdX by name before serial-named disks.
func rank(s DiskSpec) string {
	if s.Serial != "" {
		return "~" + s.Serial
	}
	return s.Device
}

// checkOrder refuses /dev/vdX names the attach order cannot give (the
// n-th disk is /dev/vd<a+n>).
func checkOrder(ds []DiskSpec) error {
	for i, d := range ds {
		if d.Serial != "" {
			continue
		}
		if want := fmt.Sprintf("/dev/vd%c", 'a'+i); d.Device != want {
			return fmt.Errorf("disk.%s: device %s: the VM's disk %d is %s (name the disks /dev/vda, /dev/vdb, ... in turn)", d.Attr, d.Device, i+1, want)
		}
	}
	return nil
}

// HasESP reports whether a GPT of l has an EFI system partition: the VM
// then boots the installed system through OVMF.
func HasESP(l *disko.Layout) bool {
	for _, d := range l.Disks {
		g, ok := d.Content.(*disko.GPT)
		if !ok {
			continue
		}
		for _, p := range g.Partitions {
			if t := strings.ToLower(p.Type); t == "ef00" || t == esp {
				return true
			}
		}
	}
	return false
}
