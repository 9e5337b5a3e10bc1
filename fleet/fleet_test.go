package fleet

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/nixos-via/nixos-via/internal/event"
)

func TestParsePair(t *testing.T) {
	tests := []struct {
		in   string
		want Host
		bad  bool
	}{
		{in: "web=10.0.0.1", want: Host{Name: "web", Addr: "10.0.0.1"}},
		{in: "web=root@h:2222", want: Host{Name: "web", User: "root", Addr: "h", Port: 2222}},
		{in: "v6=[::1]", want: Host{Name: "v6", Addr: "[::1]"}},
		{in: "web", bad: true},
		{in: "=h", bad: true},
		{in: "web=h:99999", bad: true},
		{in: "web=@h", bad: true},
	}
	for _, tt := range tests {
		got, err := ParsePair(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("ParsePair(%q) error = %v, want error %v", tt.in, err, tt.bad)
			continue
		}
		if !tt.bad && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePair(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSelect(t *testing.T) {
	hosts := []Host{
		{Name: "web1", Tags: []string{"web", "eu"}},
		{Name: "web2", Tags: []string{"web"}},
		{Name: "db1", Tags: []string{"db", "eu"}},
	}
	tests := []struct {
		on   string
		want []string
		bad  bool
	}{
		{on: "", want: []string{"web1", "web2", "db1"}},
		{on: "db1", want: []string{"db1"}},
		{on: "web*", want: []string{"web1", "web2"}},
		{on: "@eu", want: []string{"web1", "db1"}},
		{on: "db1,web2", want: []string{"web2", "db1"}},
		{on: "@db, web*", want: []string{"web1", "web2", "db1"}},
		{on: "nope", bad: true},
		{on: "@nope", bad: true},
		{on: "[", bad: true},
	}
	for _, tt := range tests {
		got, err := Select(hosts, tt.on)
		if (err != nil) != tt.bad {
			t.Errorf("Select(%q) error = %v, want error %v", tt.on, err, tt.bad)
			continue
		}
		var names []string
		for _, h := range got {
			names = append(names, h.Name)
		}
		if !tt.bad && !reflect.DeepEqual(names, tt.want) {
			t.Errorf("Select(%q) = %v, want %v", tt.on, names, tt.want)
		}
	}
}

// One host failing does not stop the others; events carry their host; the
// exit code is the worst host's.
func TestRunFailureIsolated(t *testing.T) {
	hosts := []Host{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	var mu sync.Mutex
	seen := map[string]int{}
	sink := event.Func(func(e event.Event) { mu.Lock(); seen[e.Host]++; mu.Unlock() })
	f := func(ctx context.Context, h Host, s event.Sink) (int64, error) {
		s.Emit(event.Event{Msg: "hi"})
		if h.Name == "b" {
			return 0, errors.New("switch failed")
		}
		return 42, nil
	}
	res := Run(context.Background(), hosts, 2, sink, f, func(error) int { return 11 })
	if got, want := seen, map[string]int{"a": 1, "b": 1, "c": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("events per host = %v, want %v", got, want)
	}
	if got, want := ExitCode(res), 11; got != want {
		t.Errorf("ExitCode = %d, want %d", got, want)
	}
	var buf bytes.Buffer
	Summary(&buf, res)
	for _, want := range []string{"a ", "b ", "c ", "failed", "switch failed", "42"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, buf.String())
		}
	}
	if res[0].Err != nil || res[2].Err != nil || res[0].Bytes != 42 {
		t.Errorf("results = %+v", res)
	}
}

func TestExitCodeWorst(t *testing.T) {
	if got, want := ExitCode([]Result{{Code: 10}, {Code: 12}, {Code: 1}}), 12; got != want {
		t.Errorf("ExitCode = %d, want %d", got, want)
	}
	if got := ExitCode([]Result{{}, {}}); got != 0 {
		t.Errorf("ExitCode all ok = %d, want 0", got)
	}
}
