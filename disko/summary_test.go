package disko

import (
	"strings"
	"testing"
)

// TestLayoutWrite checks each view of a layout: what it prints, and that
// a layout that cannot be rendered in the mode is reported invalid with
// its source, printing nothing.
func TestLayoutWrite(t *testing.T) {
	l, err := Parse([]byte(`{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
		"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	nixos, err := l.NixOSJSON()
	if err != nil {
		t.Fatal(err)
	}
	script, err := l.Script(ModeMount, RenderOptions{RootMountpoint: "/target"})
	if err != nil {
		t.Fatal(err)
	}
	bad := RenderOptions{RootMountpoint: "target"}
	tests := []struct {
		name    string
		report  Report
		want    string
		wantErr string
	}{
		{"wipes", Report{Show: ShowWipes}, "Mode destroy,format,mount WIPES these disks:\n  /dev/vda  (disk.main)\n", ""},
		{"no wipes in mount mode", Report{Show: ShowWipes, Mode: ModeMount}, "Mode mount wipes no disk.\n", ""},
		{"validity", Report{Show: ShowValidity}, "layout.json: valid (1 disk)\n", ""},
		{"script", Report{Show: ShowScript, Mode: ModeMount, Opts: RenderOptions{RootMountpoint: "/target"}}, script, ""},
		{"nixos", Report{Show: ShowNixOS}, string(nixos) + "\n", ""},
		{"wipes not renderable", Report{Show: ShowWipes, Opts: bad}, "", `invalid layout layout.json: root mountpoint "target" is not an absolute path`},
		{"validity not renderable", Report{Show: ShowValidity, Opts: bad}, "", `invalid layout layout.json: root mountpoint "target" is not an absolute path`},
		{"script not renderable", Report{Show: ShowScript, Opts: bad}, "", `invalid layout layout.json: root mountpoint "target" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got strings.Builder
			err := l.Write(&got, "layout.json", tt.report)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if got.String() != tt.want || gotErr != tt.wantErr {
				t.Errorf("Write = %q, error %q; want %q, error %q", got.String(), gotErr, tt.want, tt.wantErr)
			}
		})
	}
}
