package phase

import (
	"errors"
	"fmt"
	"testing"
)

func TestRefusalMessages(t *testing.T) {
	for _, tc := range []struct {
		r    *Refusal
		want string
	}{
		{&Refusal{Check: "memory", Msg: "too little"}, "pre-flight memory: too little"},
		{&Refusal{Check: Disko, Problems: []string{"no sgdisk", "no mkfs.ext4"}}, "pre-flight disko: nothing was touched: no sgdisk; no mkfs.ext4"},
	} {
		if got := tc.r.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if !tc.r.Refused() {
			t.Errorf("%q: Refused() = false", tc.want)
		}
	}
}

func TestErrorWrapsItsCause(t *testing.T) {
	cause := Usagef("--x %q: bad", "y")
	err := fmt.Errorf("run: %w", &Error{Phase: Install, Err: cause})
	var ue *UsageError
	var pe *Error
	if !errors.As(err, &pe) || pe.Phase != Install || !errors.As(err, &ue) {
		t.Fatalf("errors.As through %v: phase error %v, usage error %v", err, pe, ue)
	}
	if got, want := err.Error(), `run: install: --x "y": bad`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestAllInOrder(t *testing.T) {
	if got := fmt.Sprint(All()); got != "[kexec disko install reboot]" {
		t.Errorf("All() = %s", got)
	}
}
