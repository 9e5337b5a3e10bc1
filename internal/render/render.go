// Package render shows a run's phase events to a person or a program:
// JSON lines with --json; otherwise plain lines and, on a terminal,
// progress bars.
package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/nixos-via/nixos-via/internal/event"
)

// UI renders phase events: JSON lines on stdout with --json; otherwise
// plain lines on stderr and, on a terminal (tty), progress bars.
type UI struct {
	mu       sync.Mutex
	json     *json.Encoder
	out      io.Writer // human text
	tty      bool
	bar      *progressbar.ProgressBar
	barKey   string
	lastLine time.Time
	lastKey  string
	lastDone int64
	now      func() time.Time
}

// New is a UI writing JSON events to stdout when asJSON, else text to
// stderr, with progress bars when stderr is a terminal (tty).
func New(stdout, stderr io.Writer, asJSON, tty bool) *UI {
	u := &UI{out: stderr, now: time.Now, tty: tty}
	if asJSON {
		u.json = json.NewEncoder(stdout)
	}
	return u
}

// Emit implements event.Sink.
func (u *UI) Emit(e event.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = u.now()
	}
	if u.json != nil {
		u.json.Encode(e)
		return
	}
	switch e.Kind {
	case event.Progress:
		u.progress(e)
		return
	case event.Done:
		u.finishBar()
		if e.Msg != "" {
			fmt.Fprintf(u.out, "    %s\n", e.Msg)
		}
		return
	}
	u.finishBar()
	prefix := map[event.Kind]string{event.Step: "==> ", event.Info: "    ", event.Warn: "warning: "}[e.Kind]
	if e.Phase != "" && e.Kind == event.Step {
		prefix += "[" + e.Phase + "] "
	}
	fmt.Fprintf(u.out, "%s%s\n", prefix, e.Msg)
}

func (u *UI) progress(e event.Event) {
	key := e.Phase + "/" + e.Msg
	if u.tty {
		if u.bar == nil || u.barKey != key {
			u.finishBar()
			opts := []progressbar.Option{
				progressbar.OptionSetWriter(u.out),
				progressbar.OptionSetDescription(e.Msg),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100 * time.Millisecond),
				progressbar.OptionShowElapsedTimeOnFinish(),
			}
			if e.Unit == "bytes" {
				opts = append(opts, progressbar.OptionShowBytes(true))
			}
			u.bar, u.barKey = progressbar.NewOptions64(e.Total, opts...), key
		}
		if from := fromCaches(e); from != "" {
			u.bar.Describe(e.Msg + from)
		}
		u.bar.Set64(e.Done)
		return
	}
	// No terminal: a line every 5 s and at the end (once).
	if e.Done < e.Total && u.now().Sub(u.lastLine) < 5*time.Second {
		return
	}
	if key == u.lastKey && e.Done == u.lastDone {
		return
	}
	u.lastLine, u.lastKey, u.lastDone = u.now(), key, e.Done
	if e.Unit == "bytes" {
		fmt.Fprintf(u.out, "    %s: %s of %s%s\n", e.Msg, event.Bytes(e.Done), event.Bytes(e.Total), fromCaches(e))
	} else {
		fmt.Fprintf(u.out, "    %s: %d of %d %s\n", e.Msg, e.Done, e.Total, e.Unit)
	}
}

// fromCaches says how much of a closure copy's progress the target
// fetched from binary caches itself (" (1.2 GiB from the caches)"), or ""
// when nothing came from them.
func fromCaches(e event.Event) string {
	n, err := strconv.ParseInt(e.Data["bytes_substituted"], 10, 64)
	if err != nil || n <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%s from the caches)", event.Bytes(n))
}

func (u *UI) finishBar() {
	if u.bar != nil {
		u.bar.Finish()
		fmt.Fprintln(u.out)
		u.bar = nil
	}
}
