package diskorun

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// TestTerminalConfirm checks that only a typed "yes" goes on, and that
// anything else is a refusal that says nothing was touched.
func TestTerminalConfirm(t *testing.T) {
	tests := []struct {
		typed   string
		refused bool
	}{
		{"yes\n", false},
		{"  yes  \n", false},
		{"yes", false}, // the input ends without a newline
		{"y\n", true},
		{"no\n", true},
		{"YES\n", true},
		{"", true},
	}
	for _, tt := range tests {
		f := filepath.Join(t.TempDir(), "typed")
		if err := os.WriteFile(f, []byte(tt.typed), 0o600); err != nil {
			t.Fatal(err)
		}
		in, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		err = (&Terminal{In: in, Out: &out}).Confirm()
		in.Close()
		var r *phase.Refusal
		if got := errors.As(err, &r); got != tt.refused || (got && r.Msg != "not confirmed; nothing was touched") {
			t.Errorf("typed %q: error %v, want refused = %v", tt.typed, err, tt.refused)
		}
		if out.String() != `Type "yes" to erase them: ` {
			t.Errorf("typed %q: prompt %q", tt.typed, out.String())
		}
	}
}
