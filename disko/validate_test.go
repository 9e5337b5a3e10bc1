package disko

import (
	"errors"
	"strings"
	"testing"
)

const simpleDisk = `{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
  "ESP":{"size":"500M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
  "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}`

func TestParseRejectsBadLayouts(t *testing.T) {
	tests := []struct {
		name, layout string
		want         string // substring of one issue, including the JSON path
	}{
		{"unknown mkfs", strings.Replace(simpleDisk, `"ext4"`, `"ext5"`, 1),
			`disk.main.content.partitions.root.content.format: unknown filesystem "ext5"`},
		{"unknown content type", strings.Replace(simpleDisk, `"type":"filesystem","format":"ext4"`, `"type":"ext4"`, 1),
			`disk.main.content.partitions.root.content.type: unknown type "ext4"`},
		{"unknown field", strings.Replace(simpleDisk, `"size":"500M"`, `"size":"500M","sise":"1G"`, 1),
			`disk.main.content.partitions.ESP.sise: unknown field`},
		{"unknown top-level class", `{"disks":{}}`, `disks: unknown device class`},
		{"missing device", `{"disk":{"main":{"type":"disk","content":null}}}`,
			`disk.main.device: required field is missing`},
		{"relative device", `{"disk":{"main":{"type":"disk","device":"vda"}}}`,
			`disk.main.device: device "vda" is not an absolute path`},
		{"gpt inside partition", strings.Replace(simpleDisk, `{"type":"filesystem","format":"vfat","mountpoint":"/boot"}`, `{"type":"gpt","partitions":{}}`, 1),
			`disk.main.content.partitions.ESP.content.type: type "gpt" cannot be used here`},
		{"two 100% partitions", strings.Replace(simpleDisk, `"size":"500M"`, `"size":"100%"`, 1),
			`size "100%" on the same table`},
		{"duplicate mountpoint", strings.Replace(simpleDisk, `"/boot"`, `"/"`, 1),
			`mountpoint "/" is already used by`},
		{"duplicate label", strings.Replace(simpleDisk, `"size":"500M"`, `"size":"500M","label":"disk-main-root"`, 1),
			`duplicate partition label "disk-main-root"`},
		{"partition after the 100% one", strings.Replace(simpleDisk, `"size":"500M"`, `"size":"500M","priority":9999`, 1),
			`disk.main.content.partitions.ESP.priority: partition is created after the "100%" partition`},
		{"keyFile not absolute", `{"disk":{"d":{"device":"/dev/vda","content":{"type":"luks","name":"c","settings":{"keyFile":"secret.key"}}}}}`,
			`disk.d.content.settings.keyFile: keyFile "secret.key" is not an absolute path`},
		{"passwordFile not absolute", `{"disk":{"d":{"device":"/dev/vda","content":{"type":"luks","name":"c","passwordFile":"tmp/pw"}}}}`,
			`disk.d.content.passwordFile: passwordFile "tmp/pw" is not an absolute path`},
		{"missing volume group", `{"disk":{"d":{"device":"/dev/vda","content":{"type":"lvm_pv","vg":"pool"}}}}`,
			`disk.d.content.vg: volume group "pool" does not exist`},
		{"vg without type", `{"disk":{"d":{"device":"/dev/vda","content":{"type":"lvm_pv","vg":"pool"}}},"lvm_vg":{"pool":{"lvs":{}}}}`,
			`lvm_vg.pool.type: required field is missing`},
		{"LV after 100%FREE", `{"disk":{"d":{"device":"/dev/vda","content":{"type":"lvm_pv","vg":"pool"}}},"lvm_vg":{"pool":{"type":"lvm_vg","lvs":{
			"a":{"size":"100%FREE","priority":1},"b":{"size":"10G"}}}}}`,
			`lvm_vg.pool.lvs.b.size: LV of size 10G is created after lvm_vg.pool.lvs.a took all free space`},
		{"LV percentages over 100", `{"disk":{"d":{"device":"/dev/vda","content":{"type":"lvm_pv","vg":"pool"}}},"lvm_vg":{"pool":{"type":"lvm_vg","lvs":{
			"a":{"size":"60%VG"},"b":{"size":"50%VG"}}}}}`,
			`lvm_vg.pool.lvs.b.size: LV sizes in %VG add up to 110%`},
		{"thin LV without pool", `{"disk":{"d":{"device":"/dev/vda","content":{"type":"lvm_pv","vg":"pool"}}},"lvm_vg":{"pool":{"type":"lvm_vg","lvs":{
			"a":{"size":"1G","lvm_type":"thinlv","pool":"tp"}}}}}`,
			`lvm_vg.pool.lvs.a.pool: thin pool "tp" is not a thin-pool LV`},
		{"mdadm without members", `{"mdadm":{"r":{"content":null}}}`, `mdadm.r: mdadm array "r" has no members`},
		{"bad partition size", strings.Replace(simpleDisk, `"500M"`, `"500MB"`, 1),
			`disk.main.content.partitions.ESP.size: invalid size "500MB"`},
		{"swap as filesystem", strings.Replace(simpleDisk, `"format":"vfat"`, `"format":"swap"`, 1),
			`unknown filesystem "swap" (use type = "swap"`},
		{"wrong value type", strings.Replace(simpleDisk, `"size":"500M"`, `"size":500`, 1),
			`disk.main.content.partitions.ESP.size: expected a string, got a number`},
		{"not JSON", `{"disk":`, `invalid JSON`},
		{"duplicate LUKS name", `{"disk":{"a":{"device":"/dev/vda","content":{"type":"luks","name":"c","passwordFile":"/p"}},"b":{"device":"/dev/vdb","content":{"type":"luks","name":"c","passwordFile":"/p"}}}}`,
			`disk.b.content.name: LUKS name "c" is already used by disk.a.content.name`},
		{"same device twice", `{"disk":{"a":{"device":"/dev/vda"},"b":{"device":"/dev/vda"}}}`,
			`disk.b.device: device "/dev/vda" is also used by disk.a.device`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse([]byte(tt.layout))
			if err == nil {
				t.Fatalf("Parse accepted the layout, want an error containing %q (layout %+v)", tt.want, l)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error type %T, want *ValidationError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseAcceptsSimpleLayout(t *testing.T) {
	l, err := Parse([]byte(simpleDisk))
	if err != nil {
		t.Fatal(err)
	}
	g := l.Disks[0].Content.(*GPT)
	var got []string
	for _, p := range g.Partitions {
		got = append(got, p.Label+"="+p.Device)
	}
	want := "disk-main-ESP=/dev/disk/by-partlabel/disk-main-ESP disk-main-root=/dev/disk/by-partlabel/disk-main-root"
	if strings.Join(got, " ") != want {
		t.Errorf("partitions: got %v, want %s", got, want)
	}
}

func TestLabelHashingAndEscaping(t *testing.T) {
	tests := []struct{ kind, parent, name, wantLabel, wantPath string }{
		{"disk", "vdb", "name^with\\some@special#chars", "bda9ca5ea830ae986b7f25657727a441c6d7", "/dev/disk/by-partlabel/bda9ca5ea830ae986b7f25657727a441c6d7"},
		{"disk", "vdb", "name with spaces", "disk-vdb-name with spaces", `/dev/disk/by-partlabel/disk-vdb-name\x20with\x20spaces`},
		{"luks", "crypted", "root", "luks-crypted-root", "/dev/disk/by-partlabel/luks-crypted-root"},
	}
	for _, tt := range tests {
		label := partitionLabel(tt.kind, tt.parent, tt.name)
		if label != tt.wantLabel {
			t.Errorf("label(%s,%s,%s): got %q, want %q", tt.kind, tt.parent, tt.name, label, tt.wantLabel)
		}
		if got := "/dev/disk/by-partlabel/" + udevEscape(label); got != tt.wantPath {
			t.Errorf("path: got %q, want %q", got, tt.wantPath)
		}
	}
}
