package target

import (
	"reflect"
	"testing"
)

func TestParseValues(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want Values
	}{
		{"empty", "", Values{}},
		{"lines", "dir=/tmp/x\nfree=12\n", Values{"dir": {"/tmp/x"}, "free": {"12"}}},
		{"repeated key in order", "file=1 a\nfile=2 b\n", Values{"file": {"1 a", "2 b"}}},
		{"value with =", "opt=a=b\n", Values{"opt": {"a=b"}}},
		{"lines without = skipped", "warning: x\nk=v\n\n", Values{"k": {"v"}}},
		{"empty value", "k=\n", Values{"k": {""}}},
		{"CRLF", "k=v\r\n", Values{"k": {"v"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseValues(tc.out); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseValues(%q) = %q, want %q", tc.out, got, tc.want)
			}
		})
	}
}

func TestValuesGetIntHas(t *testing.T) {
	v := ParseValues("n=1\nn= 42 \nbad=x\nempty=\n")
	if got := v.Get("n"); got != " 42 " {
		t.Errorf("Get(n) = %q, want the last value %q", got, " 42 ")
	}
	if got := v.Get("missing"); got != "" {
		t.Errorf("Get(missing) = %q, want \"\"", got)
	}
	tests := []struct {
		key    string
		want   int64
		wantOK bool
	}{
		{"n", 42, true},
		{"bad", 0, false},
		{"empty", 0, false},
		{"missing", 0, false},
	}
	for _, tc := range tests {
		if got, ok := v.Int(tc.key); got != tc.want || ok != tc.wantOK {
			t.Errorf("Int(%q) = %d, %v; want %d, %v", tc.key, got, ok, tc.want, tc.wantOK)
		}
	}
	if !v.Has("empty") || v.Has("missing") {
		t.Errorf("Has(empty), Has(missing) = %v, %v; want true, false", v.Has("empty"), v.Has("missing"))
	}
}
