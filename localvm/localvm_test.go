package localvm

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/disko"
)

func layout(t *testing.T, s string) (*disko.Layout, map[string]int64) {
	t.Helper()
	l, err := disko.Parse([]byte(s))
	if err != nil {
		t.Fatalf("disko.Parse: %v", err)
	}
	n, err := l.Needs(disko.ModeDestroyFormatMount)
	if err != nil {
		t.Fatalf("Needs: %v", err)
	}
	return l, n.DiskMinBytes
}

const (
	efiExt4 = `{"disk":{"main":{"device":"/dev/vda","content":{"type":"gpt","partitions":{
		"ESP":{"size":"256M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
		"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`
	big = `{"disk":{"main":{"device":"/dev/vda","content":{"type":"gpt","partitions":{
		"data":{"size":"20G","content":{"type":"filesystem","format":"ext4","mountpoint":"/data"}},
		"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`
	twoDisks = `{"disk":{"b":{"device":"/dev/vdb","content":{"type":"gpt","partitions":{
		"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}},
		"s":{"device":"/dev/disk/by-id/virtio-data1","content":{"type":"gpt","partitions":{
		"d":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/d"}}}}},
		"a":{"device":"/dev/vda","content":{"type":"gpt","partitions":{
		"boot":{"size":"1M","type":"EF02"}}}}}}`
	gap    = `{"disk":{"main":{"device":"/dev/vdb","content":{"type":"gpt","partitions":{"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`
	sdaDev = `{"disk":{"main":{"device":"/dev/sda","content":{"type":"gpt","partitions":{"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`
)

func TestDisks(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name, layout string
		want         []DiskSpec
		wantErr      string
		wantESP      bool
	}{
		{name: "efi-ext4 gets the minimum", layout: efiExt4, wantESP: true,
			want: []DiskSpec{{Attr: "main", Device: "/dev/vda", Size: MinDiskBytes}}},
		{name: "fixed sizes plus slack", layout: big,
			want: []DiskSpec{{Attr: "main", Device: "/dev/vda", Size: 20<<30 + 2*mib + Slack}}},
		{name: "vdX in letter order, serials last", layout: twoDisks, want: []DiskSpec{
			{Attr: "a", Device: "/dev/vda", Size: MinDiskBytes},
			{Attr: "b", Device: "/dev/vdb", Size: MinDiskBytes},
			{Attr: "s", Device: "/dev/disk/by-id/virtio-data1", Serial: "data1", Size: MinDiskBytes}}},
		{name: "vdb without vda", layout: gap, wantErr: "the VM's disk 1 is /dev/vda"},
		{name: "not a virtio name", layout: sdaDev, wantErr: "needs /dev/vdX or /dev/disk/by-id/virtio-SERIAL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, needs := layout(t, tc.layout)
			got, err := Disks(l, needs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Disks error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Disks: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Disks = %+v, want %+v", got, tc.want)
			}
			if got := HasESP(l); got != tc.wantESP {
				t.Errorf("HasESP = %v, want %v", got, tc.wantESP)
			}
		})
	}
}

func TestChooseAccel(t *testing.T) {
	works := func(context.Context) error { return nil }
	fails := func(context.Context) error { return errors.New("open /dev/kvm: no such file") }
	hangs := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	for _, tc := range []struct {
		want    string
		probe   func(context.Context) error
		got     string
		wantErr bool
	}{
		{want: "tcg", probe: works, got: "tcg"},
		{want: "kvm", probe: fails, got: "kvm"},
		{want: "auto", probe: works, got: "kvm"},
		{want: "auto", probe: fails, got: "tcg"},
		{want: "", probe: fails, got: "tcg"},
		{want: "hvf", probe: works, wantErr: true},
	} {
		got, err := ChooseAccel(context.Background(), tc.want, tc.probe)
		if (err != nil) != tc.wantErr || got != tc.got {
			t.Errorf("ChooseAccel(%q) = %q, %v; want %q, error %v", tc.want, got, err, tc.got, tc.wantErr)
		}
	}
	// A probe that hangs is cut off at the deadline and means TCG.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if got, err := ChooseAccel(ctx, "auto", hangs); err != nil || got != "tcg" {
		t.Errorf("ChooseAccel(auto, hanging probe) = %q, %v; want tcg", got, err)
	}
}

func TestLocalOptions(t *testing.T) {
	in := []string{"Port=2222", "User alice", "HostName=example.org", "ProxyJump=jump", "proxycommand nc %h %p",
		"StrictHostKeyChecking=no", "UserKnownHostsFile=/tmp/kh", "IdentityFile=~/.ssh/id_x", "ConnectTimeout=5", "ServerAliveInterval 10"}
	want := []string{"IdentityFile=~/.ssh/id_x", "ConnectTimeout=5", "ServerAliveInterval 10"}
	if got := localOptions(in); !reflect.DeepEqual(got, want) {
		t.Errorf("localOptions = %q, want %q", got, want)
	}
}
