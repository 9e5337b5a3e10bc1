package closure

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// SubstituteOptions let the agent fetch missing paths from binary caches
// itself (`agent substitute`); what the caches lack, refuse or get wrong is
// streamed in the same Send. No caches: everything is streamed.
type SubstituteOptions struct {
	// Caches are http(s) binary cache URLs (Nix substituter URLs). The
	// agent asks them as Nix does: by priority, lower first (the URL's
	// ?priority=N, else the Priority in the cache's nix-cache-info, else
	// 0), ties in this order; a cache without nix-cache-info, or one for
	// another store directory, is not asked. HTTPCaches sorts out the ones
	// the agent cannot use.
	Caches []string
	// Lookups and Jobs are the narinfo requests and NAR downloads in
	// flight; 0 means DefaultSubstituteLookups and DefaultSubstituteJobs.
	Lookups, Jobs int
	// ConnectTimeout bounds each connection to a cache (a cache that does
	// not answer is asked no more); StallTimeout gives up a response that
	// brings less than 64 KiB in that long before its end (one that sends
	// nothing, or trickles), and the path is streamed. 0 means
	// DefaultConnectTimeout and DefaultStallTimeout.
	ConnectTimeout, StallTimeout time.Duration
}

// substituteResult is what the substitute session did.
type substituteResult struct {
	got      int
	gotBytes uint64
	missed   int      // reported missing by the agent
	streamed int      // missed, or not answered: handed to the stream
	reasons  []string // the first few distinct reasons for a miss
	err      error    // the session failed; what it did not answer was streamed
	caches   []string // asked
}

const maxReasons = 3

// substitute runs `agent substitute` for missing (after the query, so its
// temporaries are safe) and puts every path the agent does not get on
// queue: a miss as soon as it is reported, the paths it never answered once
// the agent has exited, so that no path is both substituted and streamed.
// It does not close queue.
func substitute(ctx context.Context, r Runner, opts SendOptions, missing []nix.PathInfo, queue chan<- nix.PathInfo, prog *progress) substituteResult {
	so := opts.Substitute
	res := substituteResult{caches: so.Caches}
	want := make(map[string]nix.PathInfo, len(missing))
	for _, m := range missing {
		want[m.Path] = m
	}
	var in bytes.Buffer
	req := substituteRequest{Caches: so.Caches, Lookups: so.Lookups, Jobs: so.Jobs, ConnectTimeout: so.ConnectTimeout, StallTimeout: so.StallTimeout, Paths: missing}
	if err := req.write(&in); err != nil {
		res.err = err
	}
	cmd := agentCommand(opts, "substitute")
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	if res.err == nil {
		go func() {
			err := r.Run(ctx, cmd, &in, pw, &stderr)
			pw.Close()
			done <- err
		}()
	} else {
		pw.Close()
		done <- nil
	}
	answered := make(map[string]bool, len(missing))
	var protoErr error
	_, _, readErr := readSubstituteAnswers(bufio.NewReaderSize(pr, maxSubstituteLine), func(a substituteAnswer) {
		info, ok := want[a.path]
		if !ok || answered[a.path] {
			if protoErr == nil {
				protoErr = fmt.Errorf("agent answered for %s, which it was not asked for or answered before", a.path)
			}
			return
		}
		answered[a.path] = true
		if a.got {
			res.got++
			res.gotBytes += info.NarSize
			prog.addSubstituted(info.NarSize)
			return
		}
		res.missed++
		res.streamed++
		res.note(a.reason)
		queue <- info
	})
	io.Copy(io.Discard, pr) // let the agent's output end
	runErr := <-done
	// The agent has exited: what it did not answer cannot appear any more.
	for _, m := range missing {
		if !answered[m.Path] {
			res.streamed++
			queue <- m
		}
	}
	switch {
	case res.err != nil:
	case runErr != nil:
		res.err = fmt.Errorf("%s: %w: %s", cmd, runErr, strings.TrimSpace(tail(stderr.String())))
	case readErr != nil:
		res.err = fmt.Errorf("%s: %w", cmd, readErr)
	case protoErr != nil:
		res.err = fmt.Errorf("%s: %w", cmd, protoErr)
	}
	return res
}

// note keeps the first few distinct reasons for a miss, without the path
// that makes each one unique.
func (res *substituteResult) note(reason string) {
	if len(res.reasons) >= maxReasons || reason == "" {
		return
	}
	for _, r := range res.reasons {
		if r == reason {
			return
		}
	}
	res.reasons = append(res.reasons, reason)
}

// summary says where the missing paths came from, for the event after the
// copy; "" when substitution brought nothing and nothing failed, so that
// the output is as without substitution.
func (res substituteResult) summary() (event.Kind, string) {
	switch {
	case res.err != nil:
		return event.Warn, fmt.Sprintf("substitute: %v; %d paths came from the caches, the other %d were streamed", res.err, res.got, res.streamed)
	case res.got == 0:
		return "", ""
	}
	msg := fmt.Sprintf("substitute: %d paths (%s NAR) from %s, %d streamed", res.got, event.Bytes(int64(res.gotBytes)), strings.Join(res.caches, ", "), res.streamed)
	if len(res.reasons) > 0 {
		msg += ": " + strings.Join(res.reasons, "; ")
	}
	return event.Info, msg
}

// startSubstitute runs substitute beside the stream when opts names caches
// and something is missing, else puts every missing path on queue; either
// way queue is closed once it holds all it will. The result comes on the
// returned channel (nil without substitution).
func startSubstitute(ctx context.Context, r Runner, opts SendOptions, missing []nix.PathInfo, queue chan nix.PathInfo, prog *progress) <-chan substituteResult {
	if len(opts.Substitute.Caches) == 0 || len(missing) == 0 {
		for _, m := range missing {
			queue <- m
		}
		close(queue)
		return nil
	}
	prog.substituting = true
	done := make(chan substituteResult, 1)
	go func() {
		res := substitute(ctx, r, opts, missing, queue, prog)
		close(queue)
		done <- res
	}()
	return done
}

// checkSubstituteOptions refuses caches the agent cannot use.
func checkSubstituteOptions(so SubstituteOptions) error {
	if _, others := HTTPCaches(so.Caches); len(others) > 0 {
		return fmt.Errorf("substitute from %s: the agent fetches from http(s) binary caches only", strings.Join(others, ", "))
	}
	if so.Lookups < 0 || so.Jobs < 0 || so.Lookups > 256 || so.Jobs > 256 {
		return errors.New("substitute: lookups and jobs want 0 to 256")
	}
	return nil
}

// sortBiggestFirst orders paths so the channels finish at about the same time.
func sortBiggestFirst(infos []nix.PathInfo) {
	sort.SliceStable(infos, func(i, j int) bool { return infos[i].NarSize > infos[j].NarSize })
}
