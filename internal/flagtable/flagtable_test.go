package flagtable

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// values is where a test table's flags go.
type values struct {
	On      bool
	Name    string
	Key     string
	Wait    time.Duration
	Last    string
	All     []string
	Pairs   []Pair
	Switch  bool
	Port    int
	Jobs    int
	Timeout time.Duration
	Pos     []string
}

func testTable(v *values) []Flag {
	return []Flag{
		{Name: "on", Short: "o", Group: "A", Help: "a switch", To: &v.On},
		{Name: "name", Short: "n", Group: "A", Arg: "NAME", Help: "a string", To: &v.Name},
		{Name: "identity-file", Short: "i", ShortOnly: true, Group: "A", Arg: "KEY", Help: "shown as -i", To: &v.Key},
		{Name: "wait", Group: "B", Arg: "DUR", Help: "a duration", To: &v.Wait},
		{Name: "last", Group: "B", Arg: "V", Help: "the last value", To: func(s string) error { v.Last = s; return nil }},
		{Name: "all", Group: "B", Arg: "V", Help: "every value", To: func(s []string) error { v.All = s; return nil }},
		{Name: "pair", Group: "B", Arg: "K V", Help: "two arguments", To: func(p []Pair) error { v.Pairs = p; return nil }},
		{Name: "switch", Group: "B", Help: "a switch with a function", To: func() error { v.Switch = true; return nil }},
		{Name: "port", Group: "B", Arg: "PORT", Help: "a port", To: Port(&v.Port, "--port")},
		{Name: "jobs", Group: "B", Arg: "N", Help: "a count", To: Count(&v.Jobs, "jobs", 1, 8)},
		{Name: "timeout", Group: "B", Arg: "DUR", Help: "a positive duration", To: Duration(&v.Timeout, "timeout")},
		{Name: "help", Short: "h", Group: "B", Help: "help", To: new(bool)},
	}
}

func parse(args ...string) (values, bool, error) {
	var v values
	_, help, err := Parse(testTable(&v), args, func(p []string) error {
		if len(p) > 0 {
			v.Pos = p
		}
		return nil
	})
	return v, help, err
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want values
	}{
		{"nothing", nil, values{}},
		{"switch and string, long and short", []string{"-o", "--name", "x"}, values{On: true, Name: "x"}},
		{"--flag=value", []string{"--name=x", "--wait=2s"}, values{Name: "x", Wait: 2 * time.Second}},
		{"a short-only flag by both names", []string{"-i", "/k"}, values{Key: "/k"}},
		{"its long name is accepted", []string{"--identity-file", "/k"}, values{Key: "/k"}},
		{"a function flag gets the last value", []string{"--last", "a", "--last", "b"}, values{Last: "b"}},
		{"a list flag gets every value", []string{"--all", "a", "--all", "b"}, values{All: []string{"a", "b"}}},
		{"two-argument flags repeat", []string{"--pair", "a", "1", "--pair", "b", "2"}, values{Pairs: []Pair{{"a", "1"}, {"b", "2"}}}},
		{"a two-argument value that looks like a flag", []string{"--pair", "k", "--on"}, values{Pairs: []Pair{{"k", "--on"}}}},
		{"a value that looks like a two-argument flag", []string{"--name", "--pair", "p"}, values{Name: "--pair", Pos: []string{"p"}}},
		{"a switch does not take the next argument", []string{"--switch", "host"}, values{Switch: true, Pos: []string{"host"}}},
		{"positional arguments anywhere", []string{"a", "-o", "b"}, values{On: true, Pos: []string{"a", "b"}}},
		{"after -- everything is positional", []string{"--", "--pair", "a"}, values{Pos: []string{"--pair", "a"}}},
		{"value parsers", []string{"--port", "2222", "--jobs", "8", "--timeout", "90s"}, values{Port: 2222, Jobs: 8, Timeout: 90 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, help, err := parse(tc.args...)
			if err != nil || help {
				t.Fatalf("Parse(%q): help %v, error %v", tc.args, help, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) =\n%+v, want\n%+v", tc.args, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--name"}, "flag needs an argument"},
		{[]string{"--pair", "k"}, "--pair needs two arguments: --pair K V"},
		{[]string{"--pair=k", "v"}, "--pair takes two arguments (K V), not --pair=..."},
		{[]string{"--wait", "soon"}, `invalid argument "soon" for "--wait" flag`},
		{[]string{"--port", "0"}, `--port: invalid port "0"`},
		{[]string{"--port", "65536"}, `--port: invalid port "65536"`},
		{[]string{"--jobs", "9"}, `--jobs "9": want a number from 1 to 8`},
		{[]string{"--jobs", "x"}, `--jobs "x": want a number from 1 to 8`},
		{[]string{"--timeout", "0s"}, `--timeout "0s": want a duration like 90s or 5m`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := parse(tc.args...)
			var ue *phase.UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want a *phase.UsageError containing %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestHelpStopsBeforeTheRest: with --help neither the positional
// arguments nor the flags' functions are looked at, so a help request on
// an otherwise bad command line still gets the help.
func TestHelpStopsBeforeTheRest(t *testing.T) {
	var v values
	positional := func([]string) error { return errors.New("positional ran") }
	_, help, err := Parse(testTable(&v), []string{"--port", "0", "-h", "a", "b"}, positional)
	if !help || err != nil || v.Port != 0 {
		t.Errorf("help %v, error %v, port %d; want help, no error, port untouched", help, err, v.Port)
	}
}

func TestWriteGroups(t *testing.T) {
	table := []Flag{
		{Name: "on", Short: "o", Group: "A", Help: "a switch"},
		{Name: "identity-file", Short: "i", ShortOnly: true, Group: "A", Arg: "KEY", Help: "shown as -i"},
		{Name: "pair", Group: "B", Arg: "K V", Help: "two arguments"},
		{Name: "hidden", Group: "C", Help: "in no group that is printed"},
	}
	var b strings.Builder
	WriteGroups(&b, table, []string{"B", "A"})
	want := `
B:
      --pair K V                           two arguments

A:
  -o, --on                                 a switch
  -i KEY                                   shown as -i
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestPick(t *testing.T) {
	var v values
	table := testTable(&v)
	tests := []struct {
		names []string
		want  []string
	}{
		{[]string{"wait", "on"}, []string{"wait", "on"}},
		{[]string{"pair"}, []string{"pair"}},
		{nil, []string{}},
	}
	for _, tt := range tests {
		got := []string{}
		for _, f := range Pick(table, tt.names...) {
			got = append(got, f.Name)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Pick(%q) = %q, want %q", tt.names, got, tt.want)
		}
	}
	// A picked flag still writes where the table said.
	if _, _, err := Parse(Pick(table, "name"), []string{"--name", "x"}, func([]string) error { return nil }); err != nil || v.Name != "x" {
		t.Errorf("parse picked --name: %v, Name = %q", err, v.Name)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Pick of an unknown flag did not panic")
		}
	}()
	Pick(table, "none")
}
