package nix_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/nix/nixtest"
)

// moduleShaped is disko.devices as disko's module leaves it, reduced to
// what matters to the evaluation: internal options on every node, some of
// them functions, "_parent" a cycle back up the tree, "_module" holding a
// function-valued argument, and the user-facing defaults.
const moduleShaped = `let
  devices = {
    disk.main = rec {
      type = "disk"; name = "main"; device = "/dev/vda"; destroy = true;
      imageName = "main"; imageSize = "2G"; preCreateHook = "";
      _parent = devices; _pkgs = pkgs: [ ]; _meta = { }; _create = "sgdisk ...";
      _module.args = { name = "main"; pkgs = { lib.id = x: x; }; };
      content = {
        type = "gpt"; efiGptPartitionFirst = true; _parent = devices.disk.main;
        _meta = dev: { }; _pkgs = pkgs: [ ];
        partitions.root = {
          name = "root"; label = "disk-main-root"; size = "100%"; priority = 9000;
          type = "8300"; _index = 1; _parent = devices.disk.main.content;
          content = { type = "filesystem"; format = "ext4"; mountpoint = "/";
            mountOptions = [ "defaults" ]; extraArgs = [ ]; _meta = dev: { }; };
        };
      };
    };
    mdadm = { }; zpool = { }; lvm_vg = { }; nodev = { }; bcachefs_filesystems = { };
    _meta = { }; _packages = pkgs: [ ]; _scripts = { pkgs, checked ? false }: { };
  };
in devices`

func layoutFlake(t *testing.T, devices string) string {
	t.Helper()
	dir := t.TempDir()
	flake := `{ outputs = { self }: { nixosConfigurations.h.config.disko.devices = ` + devices + `; }; }`
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return "path:" + dir
}

func TestEvalLayoutDropsModuleInternals(t *testing.T) {
	nixtest.Require(t)
	ref := layoutFlake(t, moduleShaped)
	raw, err := nixtest.CLI().EvalLayout(context.Background(), ref+"#nixosConfigurations.h.config.disko.devices")
	if err != nil {
		t.Fatalf("EvalLayout: %v", err)
	}
	var got any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	var want any
	json.Unmarshal([]byte(`{
	  "disk": {"main": {"type": "disk", "name": "main", "device": "/dev/vda", "destroy": true,
	    "imageName": "main", "imageSize": "2G", "preCreateHook": "",
	    "content": {"type": "gpt", "efiGptPartitionFirst": true,
	      "partitions": {"root": {"name": "root", "label": "disk-main-root", "size": "100%", "priority": 9000, "type": "8300",
	        "content": {"type": "filesystem", "format": "ext4", "mountpoint": "/", "mountOptions": ["defaults"], "extraArgs": []}}}}}},
	  "mdadm": {}, "zpool": {}, "lvm_vg": {}, "nodev": {}, "bcachefs_filesystems": {}}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EvalLayout =\n%s\nwant the user-facing options only:\n%v", raw, want)
	}
}

func TestEvalLayoutNamesAFunction(t *testing.T) {
	nixtest.Require(t)
	ref := layoutFlake(t, `{ disk.main = { device = "/dev/vda"; content.partitions = [ { size = x: x; } ]; }; }`)
	_, err := nixtest.CLI().EvalLayout(context.Background(), ref+"#nixosConfigurations.h.config.disko.devices")
	if err == nil {
		t.Fatal("EvalLayout of a layout holding a function succeeded")
	}
	if want := "disko.devices.disk.main.content.partitions[0].size is a function"; !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v\nwant it to name %q", err, want)
	}
	if strings.Contains(err.Error(), "outputs = { self }") || strings.Contains(err.Error(), "builtins.substring") {
		t.Errorf("error quotes the evaluation command line: %v", err)
	}
}

func TestInstantiateLayout(t *testing.T) {
	nixtest.Require(t)
	dir := filepath.Join(t.TempDir(), `a dir with "quotes" and ${x}`)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "layout.nix")
	if err := os.WriteFile(file, []byte(moduleShaped), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := nixtest.CLI().InstantiateLayout(context.Background(), file)
	if err != nil {
		t.Fatalf("InstantiateLayout: %v", err)
	}
	var got struct {
		Disk map[string]map[string]any `json:"disk"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if d := got.Disk["main"]; d["device"] != "/dev/vda" || d["_parent"] != nil || d["_module"] != nil {
		t.Errorf("InstantiateLayout disk.main = %v, want device /dev/vda and no internal options", d)
	}
}
