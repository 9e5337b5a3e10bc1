// Package flagtable parses a command line by a table of flags and prints
// the table as help, grouped under headings. Each Flag says how it is
// spelled, how --help shows it and where its value goes; pflag parses
// the flags of one argument and the switches, and this package takes
// care of the flags of two arguments (--chown PATH OWNER) that pflag does
// not know. A bad command line is a *phase.UsageError.
package flagtable

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// Flag is one flag: how it is spelled and shown in --help, and where its
// value goes.
type Flag struct {
	Name  string // the long name, without "--"
	Short string // the one-letter shorthand, or ""
	// ShortOnly shows and documents the flag as -Short alone; --Name is
	// still accepted.
	ShortOnly bool
	Group     string // the heading --help lists it under
	Arg       string // "" for a switch; "A B" for a flag of two arguments
	Help      string
	// To receives the value. A *bool, *string or *time.Duration is set as
	// pflag parses. A func() error (a switch that is on), func(string)
	// error (the last value), func([]string) error (every value) or
	// func([]Pair) error (a two-argument flag's pairs) is called after
	// parsing, in the table's order, when the flag was given.
	To any
}

// Pair is the value of a two-argument flag, as given.
type Pair [2]string

// Parse parses args by table. The two-argument flags are taken out
// before pflag sees the rest, knowing which other flags take a value, so
// that a value that looks like a flag is never misread. The result's
// second value is true when --help was given (a flag named "help"); then
// nothing else runs. Otherwise the positional arguments go to positional,
// then the table's functions run.
func Parse(table []Flag, args []string, positional func([]string) error) (fs *pflag.FlagSet, help bool, err error) {
	fs = pflag.NewFlagSet("nixos-via", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pairs := map[string][]Pair{}
	var after []func() error
	for _, f := range table {
		if call := register(fs, f, pairs); call != nil {
			after = append(after, call)
		}
	}
	rest, err := splitPairs(args, table, pairs)
	if err != nil {
		return fs, false, err
	}
	if err := fs.Parse(rest); err != nil {
		return fs, false, phase.Usagef("%v", err)
	}
	if h := fs.Lookup("help"); h != nil && h.Value.String() == "true" {
		return fs, true, nil
	}
	if err := positional(fs.Args()); err != nil {
		return fs, false, err
	}
	for _, call := range after {
		if err := call(); err != nil {
			return fs, false, err
		}
	}
	return fs, false, nil
}

// register declares f in fs and returns what runs after parsing, or nil
// where pflag sets the value itself.
func register(fs *pflag.FlagSet, f Flag, pairs map[string][]Pair) func() error {
	name := f.Name
	given := func() bool { return fs.Changed(name) }
	var call func() error
	switch to := f.To.(type) {
	case *bool:
		fs.BoolVarP(to, name, f.Short, *to, f.Help)
	case *string:
		fs.StringVarP(to, name, f.Short, *to, f.Help)
	case *time.Duration:
		fs.DurationVarP(to, name, f.Short, *to, f.Help)
	case func() error:
		on := fs.BoolP(name, f.Short, false, f.Help)
		given, call = func() bool { return *on }, to
	case func(string) error:
		v := fs.StringP(name, f.Short, "", f.Help)
		call = func() error { return to(*v) }
	case func([]string) error:
		v := fs.StringArrayP(name, f.Short, nil, f.Help)
		call = func() error { return to(*v) }
	case func([]Pair) error:
		given, call = func() bool { return len(pairs[name]) > 0 }, func() error { return to(pairs[name]) }
	default:
		panic("flag --" + f.Name + ": unknown target type")
	}
	if call == nil {
		return nil
	}
	return func() error {
		if !given() {
			return nil
		}
		return call()
	}
}

// splitPairs takes the two-argument flags out of args into pairs, because
// pflag knows only flags of one argument.
func splitPairs(args []string, table []Flag, pairs map[string][]Pair) (rest []string, err error) {
	byName := map[string]Flag{}
	for _, f := range table {
		byName["--"+f.Name] = f
		if f.Short != "" {
			byName["-"+f.Short] = f
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, _, hasValue := strings.Cut(a, "=")
		f, known := byName[name]
		if !known || !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		if strings.Contains(f.Arg, " ") {
			if hasValue {
				return nil, phase.Usagef("%s takes two arguments (%s), not %s=...", name, f.Arg, name)
			}
			if i+2 >= len(args) {
				return nil, phase.Usagef("%s needs two arguments: %s %s", name, name, f.Arg)
			}
			pairs[f.Name] = append(pairs[f.Name], Pair{args[i+1], args[i+2]})
			i += 2
			continue
		}
		rest = append(rest, a)
		if f.Arg != "" && !hasValue && i+1 < len(args) {
			// The next argument is this flag's value, whatever it looks like.
			i++
			rest = append(rest, args[i])
		}
	}
	return rest, nil
}

// WriteGroups prints table's flags under their group headings, in the
// order of groups: a blank line, "Group:", then a line a flag.
func WriteGroups(w io.Writer, table []Flag, groups []string) {
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g)
		for _, f := range table {
			if f.Group != g {
				continue
			}
			left := "    --" + f.Name
			switch {
			case f.ShortOnly:
				left = "-" + f.Short
			case f.Short != "":
				left = fmt.Sprintf("-%s, --%s", f.Short, f.Name)
			}
			if f.Arg != "" {
				left += " " + f.Arg
			}
			fmt.Fprintf(w, "  %-40s %s\n", left, f.Help)
		}
	}
}

// Port is a flag whose value is a TCP port, 1 to 65535; flag names it in
// the error ("-p/--ssh-port").
func Port(dst *int, flag string) func(string) error {
	return func(v string) error {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return phase.Usagef("%s: invalid port %q", flag, v)
		}
		*dst = p
		return nil
	}
}

// Duration is a flag --name whose value is a positive duration, set in
// dst and every one of more.
func Duration(dst *time.Duration, name string, more ...*time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return phase.Usagef("--%s %q: want a duration like 90s or 5m", name, v)
		}
		for _, p := range append(more, dst) {
			*p = d
		}
		return nil
	}
}

// Count is a flag --name whose value is a whole number from min to max.
func Count(dst *int, name string, min, max int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			return phase.Usagef("--%s %q: want a number from %d to %d", name, v, min, max)
		}
		*dst = n
		return nil
	}
}

// Pick is the flags of table with these names, in the order of names,
// for a command that shares some of another's flags; a name table lacks
// is a programming error.
func Pick(table []Flag, names ...string) []Flag {
	picked := make([]Flag, 0, len(names))
	for _, n := range names {
		i := slices.IndexFunc(table, func(f Flag) bool { return f.Name == n })
		if i < 0 {
			panic("flagtable.Pick: no flag --" + n)
		}
		picked = append(picked, table[i])
	}
	return picked
}
