package disko

import (
	"fmt"
	"reflect"
	"testing"
)

// TestNeedsNames: the names the script creates, which the host must not
// have in use elsewhere, in the modes that format, and only there.
func TestNeedsNames(t *testing.T) {
	tests := []struct {
		layout string
		mode   Mode
		want   []string // "kind name dev at"
	}{
		{"01-simple-efi", ModeDestroyFormatMount, nil},
		{"08-luks-lvm", ModeFormat, []string{
			"LUKS container crypted /dev/mapper/crypted at disk.main.content.partitions.luks.content",
			"volume group pool  at lvm_vg.pool",
		}},
		{"08-luks-lvm", ModeMount, nil},
		{"11-mdadm-raid1", ModeDestroyFormatMount, []string{"mdadm array boot /dev/md/boot at mdadm.boot", "mdadm array raid1 /dev/md/raid1 at mdadm.raid1"}},
	}
	for _, tt := range tests {
		t.Run(tt.layout+"/"+tt.mode.String(), func(t *testing.T) {
			n, err := parseCase(t, tt.layout).Needs(tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range n.Names {
				got = append(got, fmt.Sprintf("%s %s %s at %s", d.Kind, d.Name, d.Dev, d.JSONPath))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Names:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
