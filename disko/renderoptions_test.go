package disko

import (
	"testing"
	"time"
)

func TestRenderOptionsCheck(t *testing.T) {
	tests := []struct {
		opts RenderOptions
		want string // "" for none
	}{
		{RenderOptions{RootMountpoint: "/mnt", DeviceTimeout: time.Second}, ""},
		{RenderOptions{RootMountpoint: "mnt", DeviceTimeout: time.Second}, `--root-mountpoint "mnt" is not an absolute path`},
		{RenderOptions{RootMountpoint: "/mnt"}, "--device-timeout must be positive"},
		{RenderOptions{RootMountpoint: "/mnt", DeviceTimeout: -time.Second}, "--device-timeout must be positive"},
	}
	for _, tc := range tests {
		got := ""
		if err := tc.opts.Check(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%+v.Check() = %q, want %q", tc.opts, got, tc.want)
		}
	}
}
