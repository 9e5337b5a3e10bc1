package cli

import (
	"reflect"
	"strings"
	"testing"
)

// --host-key may be given more than once; every pin reaches the dial.
func TestHostKeyFlagRepeatable(t *testing.T) {
	a, b := "SHA256:"+strings.Repeat("A", 43), "SHA256:"+strings.Repeat("B", 43)
	for _, tc := range []struct {
		args    []string
		want    []string
		wantErr string
	}{
		{[]string{"--phases", "kexec", "--host-key", a, "root@h"}, []string{a}, ""},
		{[]string{"--phases", "kexec", "--host-key", a, "--host-key=" + b, "root@h"}, []string{a, b}, ""},
		{[]string{"--phases", "kexec", "--host-key", a, "--host-key", "MD5:00", "root@h"}, nil, `--host-key "MD5:00"`},
	} {
		o, _, err := ParseArgs(tc.args)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseArgs(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ParseArgs(%q): %v", tc.args, err)
		}
		topts, err := o.conn.resolve(Env{Getenv: func(string) string { return "" }}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := topts.HostKeyPins; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseArgs(%q): pins %q, want %q", tc.args, got, tc.want)
		}
	}
}
