package render

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
)

func TestUIJSONOneEventPerLine(t *testing.T) {
	var out, errb bytes.Buffer
	u := New(&out, &errb, true, false)
	u.Emit(event.Event{Phase: "kexec", Kind: event.Step, Msg: "upload installer"})
	u.Emit(event.Event{Phase: "kexec", Kind: event.Progress, Msg: "installer", Done: 5, Total: 10, Unit: "bytes"})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), out.String())
	}
	var e event.Event
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil {
		t.Fatal(err)
	}
	if e.Phase != "kexec" || e.Kind != event.Progress || e.Done != 5 || e.Total != 10 || e.Time.IsZero() {
		t.Errorf("event = %+v", e)
	}
	if errb.Len() != 0 {
		t.Errorf("--json wrote to stderr: %q", errb.String())
	}
}

// A closure copy's progress line names what came from the caches, and
// only when something did.
func TestUIProgressNamesTheCaches(t *testing.T) {
	tests := []struct {
		data map[string]string
		want string
	}{
		{nil, "    copy closure: 2.0 MiB of 2.0 MiB\n"},
		{map[string]string{"bytes_substituted": "0"}, "    copy closure: 2.0 MiB of 2.0 MiB\n"},
		{map[string]string{"bytes_substituted": "1048576"}, "    copy closure: 2.0 MiB of 2.0 MiB (1.0 MiB from the caches)\n"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		u := New(&out, &errb, false, false)
		u.Emit(event.Event{Phase: "install", Kind: event.Progress, Msg: "copy closure", Done: 2 << 20, Total: 2 << 20, Unit: "bytes", Data: tt.data})
		if got := errb.String(); got != tt.want {
			t.Errorf("data %v: got %q, want %q", tt.data, got, tt.want)
		}
	}
}

func TestUIPlainLinesThrottleProgress(t *testing.T) {
	var out, errb bytes.Buffer
	u := New(&out, &errb, false, false)
	now := time.Unix(1000, 0)
	u.now = func() time.Time { return now }
	u.Emit(event.Event{Phase: "install", Kind: event.Step, Msg: "copy closure"})
	for i := int64(1); i <= 10; i++ {
		now = now.Add(time.Second)
		u.Emit(event.Event{Phase: "install", Kind: event.Progress, Msg: "closure", Done: i << 20, Total: 10 << 20, Unit: "bytes"})
	}
	u.Emit(event.Event{Phase: "install", Kind: event.Progress, Msg: "closure", Done: 10 << 20, Total: 10 << 20, Unit: "bytes"})
	u.Emit(event.Event{Kind: event.Warn, Msg: "slow link"})
	got := errb.String()
	for _, want := range []string{"==> [install] copy closure\n", "closure: 10.0 MiB of 10.0 MiB\n", "warning: slow link\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "closure: 10.0 MiB of 10.0 MiB"); n != 1 {
		t.Errorf("the final progress line is printed %d times, want once:\n%s", n, got)
	}
	if n := strings.Count(got, "closure: "); n < 2 || n > 4 {
		t.Errorf("%d progress lines for 10 s of progress, want a few (one per 5 s + the end):\n%s", n, got)
	}
	if out.Len() != 0 {
		t.Errorf("plain mode wrote to stdout: %q", out.String())
	}
}
