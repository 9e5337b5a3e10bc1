// Package fleet deploys to a set of hosts: it names them
// (NAME=[user@]host[:port] pairs; fleet/flakehosts reads those a flake
// declares), selects some (--on name,glob*,@tag), runs one function per
// host in parallel with its own sink (events carry the host's name), and
// summarizes. One host's failure never stops another's.
package fleet

import (
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
)

// Host is one member of a fleet.
type Host struct {
	Name string
	User string
	Addr string
	Port int
	Tags []string
	// SSHOptions are OpenSSH -o options for this host (from the flake's
	// declaration); the command line's --ssh-option come first and win.
	SSHOptions []string
	// System, when set, is the flake attribute of this host's own system
	// (deploy.nodes.NAME.profiles.system.path, colmenaHive.nodes.NAME...);
	// "" means the one system built for every host.
	System string
}

// ParsePair reads NAME=[user@]host[:port].
func ParsePair(s string) (Host, error) {
	name, dest, ok := strings.Cut(s, "=")
	if !ok || name == "" || dest == "" {
		return Host{}, fmt.Errorf("host %q: want NAME=[user@]host[:port]", s)
	}
	h := Host{Name: name}
	if u, rest, ok := strings.Cut(dest, "@"); ok {
		if u == "" {
			return Host{}, fmt.Errorf("host %q: empty user", s)
		}
		h.User, dest = u, rest
	}
	if i := strings.LastIndex(dest, ":"); i >= 0 && !strings.Contains(dest[:i], ":") {
		p, err := strconv.Atoi(dest[i+1:])
		if err != nil || p < 1 || p > 65535 {
			return Host{}, fmt.Errorf("host %q: bad port %q", s, dest[i+1:])
		}
		h.Port, dest = p, dest[:i]
	}
	if dest == "" {
		return Host{}, fmt.Errorf("host %q: empty address", s)
	}
	h.Addr = dest
	return h, nil
}

// Select returns the hosts matching on, a comma-separated list of names,
// globs (path.Match) and @tags; an empty on selects all. A term that
// matches no host is an error, so a typo never deploys nothing silently.
func Select(hosts []Host, on string) ([]Host, error) {
	if strings.TrimSpace(on) == "" {
		return hosts, nil
	}
	picked := make(map[string]bool)
	for _, term := range strings.Split(on, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		n := 0
		for _, h := range hosts {
			ok, err := match(h, term)
			if err != nil {
				return nil, err
			}
			if ok {
				picked[h.Name] = true
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("--on %q: no host matches (hosts: %s)", term, names(hosts))
		}
	}
	var out []Host
	for _, h := range hosts {
		if picked[h.Name] {
			out = append(out, h)
		}
	}
	return out, nil
}

// names lists the hosts' names for an error, the first 20 of them.
func names(hosts []Host) string {
	var ns []string
	for i, h := range hosts {
		if i == 20 {
			ns = append(ns, fmt.Sprintf("and %d more", len(hosts)-20))
			break
		}
		ns = append(ns, h.Name)
	}
	return strings.Join(ns, ", ")
}

func match(h Host, term string) (bool, error) {
	if tag, ok := strings.CutPrefix(term, "@"); ok {
		for _, t := range h.Tags {
			if t == tag {
				return true, nil
			}
		}
		return false, nil
	}
	ok, err := path.Match(term, h.Name)
	if err != nil {
		return false, fmt.Errorf("--on %q: %w", term, err)
	}
	return ok, nil
}

// Result is one host's outcome.
type Result struct {
	Host  string
	Err   error
	Code  int // exit code; 0 on success
	Time  time.Duration
	Bytes int64
}

// Func deploys to one host, reporting to sink; it returns the bytes sent.
type Func func(ctx context.Context, h Host, sink event.Sink) (int64, error)

// Run calls f for every host, at most parallel at once (10 when < 1); each
// host's events reach sink with Host set. code maps an error to an exit
// code. Results are in the hosts' order.
func Run(ctx context.Context, hosts []Host, parallel int, sink event.Sink, f Func, code func(error) int) []Result {
	if parallel < 1 {
		parallel = 10
	}
	res := make([]Result, len(hosts))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func(i int, h Host) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			hs := event.Func(func(e event.Event) { e.Host = h.Name; sink.Emit(e) })
			n, err := f(ctx, h, hs)
			r := Result{Host: h.Name, Err: err, Time: time.Since(start), Bytes: n}
			if err != nil {
				r.Code = code(err)
			}
			res[i] = r
		}(i, h)
	}
	wg.Wait()
	return res
}

// ExitCode is 0 when every host succeeded, otherwise the highest per-host
// code: nixos-via's higher codes are the more serious outcomes (12 > 11 >
// 10 > others), so the fleet's code is its worst host's.
func ExitCode(res []Result) int {
	worst := 0
	for _, r := range res {
		if r.Code > worst {
			worst = r.Code
		}
	}
	return worst
}

// Summary writes a table: host, result, time, bytes sent.
func Summary(w io.Writer, res []Result) {
	rs := append([]Result(nil), res...)
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Host < rs[j].Host })
	fmt.Fprintf(w, "%-20s %-8s %10s %12s\n", "HOST", "RESULT", "TIME", "BYTES")
	for _, r := range rs {
		result := "ok"
		if r.Err != nil {
			result = "failed"
		}
		fmt.Fprintf(w, "%-20s %-8s %10s %12d", r.Host, result, r.Time.Round(time.Millisecond), r.Bytes)
		if r.Err != nil {
			fmt.Fprintf(w, "  %v", r.Err)
		}
		fmt.Fprintln(w)
	}
}

// Destination is h as [user@]host[:port], the form target.Options takes;
// an IPv6 address with a port is bracketed.
func (h Host) Destination() string {
	d := h.Addr
	if h.Port != 0 {
		if strings.Contains(d, ":") {
			d = "[" + d + "]"
		}
		d += ":" + strconv.Itoa(h.Port)
	}
	if h.User != "" {
		d = h.User + "@" + d
	}
	return d
}

// Lines is the sink for a fleet's human progress: every event but the
// progress counts (one bar per host would garble a terminal) reaches sink
// with its host's name in front of the message, so each line says whose
// it is.
func Lines(sink event.Sink) event.Sink {
	return event.Func(func(e event.Event) {
		if e.Kind == event.Progress {
			return
		}
		if e.Host != "" {
			e.Msg = e.Host + ": " + e.Msg
		}
		sink.Emit(e)
	})
}

// ParsePairs reads NAME=[user@]host[:port] pairs; a name given twice is an
// error.
func ParsePairs(args []string) ([]Host, error) {
	var hosts []Host
	seen := map[string]bool{}
	for _, a := range args {
		h, err := ParsePair(a)
		if err != nil {
			return nil, err
		}
		if seen[h.Name] {
			return nil, fmt.Errorf("host %q: name %s given twice", a, h.Name)
		}
		seen[h.Name] = true
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// Error is a fleet run where some host failed; Code is ExitCode of the
// results.
type Error struct {
	Failed, Total int
	Code          int
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d of %d hosts failed", e.Failed, e.Total)
}

// Err is nil when every host succeeded, else an *Error.
func Err(res []Result) error {
	n := 0
	for _, r := range res {
		if r.Err != nil {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return &Error{Failed: n, Total: len(res), Code: ExitCode(res)}
}
