package nix

import (
	"context"
	"os/exec"
	"reflect"
	"testing"
	"time"
)

func TestParseSubstituters(t *testing.T) {
	tests := []struct {
		name, out string
		want      []string
	}{
		{"list", `{"substituters":{"value":["https://cache.nixos.org/","http://127.0.0.1:1"],"defaultValue":[]}}`, []string{"https://cache.nixos.org/", "http://127.0.0.1:1"}},
		{"empty", `{"substituters":{"value":[]}}`, []string{}},
		{"list with an empty string", `{"substituters":{"value":[""]}}`, []string{}},
		{"string", `{"substituters":{"value":"https://a https://b"}}`, []string{"https://a", "https://b"}},
	}
	for _, tt := range tests {
		got, err := parseSubstituters([]byte(tt.out))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	for _, bad := range []string{`{}`, `not json`, `{"substituters":{"value":3}}`} {
		if got, err := parseSubstituters([]byte(bad)); err == nil {
			t.Errorf("parseSubstituters(%s) = %q, want an error", bad, got)
		}
	}
}

// The local Nix applies --option substituters and extra-substituters itself.
func TestSubstitutersFollowOptions(t *testing.T) {
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skipf("nix not installed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--option", "substituters", ""}, []string{}},
		{[]string{"--option", "substituters", "http://127.0.0.1:1 http://127.0.0.1:2/"}, []string{"http://127.0.0.1:1", "http://127.0.0.1:2/"}},
		{[]string{"--option", "substituters", "http://127.0.0.1:1", "--option", "extra-substituters", "http://127.0.0.1:3"}, []string{"http://127.0.0.1:1", "http://127.0.0.1:3"}},
	}
	for _, tt := range tests {
		got, err := CLI{Args: tt.args}.Substituters(ctx)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %q, %v; want %q", tt.args, got, err, tt.want)
		}
	}
}
