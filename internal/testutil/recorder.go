package testutil

import (
	"sync"

	"github.com/nixos-via/nixos-via/internal/event"
)

// Recorder is an event.Sink that keeps every event it receives, safe for
// the concurrent reports of a phase's goroutines.
type Recorder struct {
	mu     sync.Mutex
	events []event.Event
}

// Emit keeps e.
func (r *Recorder) Emit(e event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events is every event so far, in the order received.
func (r *Recorder) Events() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}

// Messages is the message of every event of kind k so far, in order.
func (r *Recorder) Messages(k event.Kind) []string {
	var out []string
	for _, e := range r.Events() {
		if e.Kind == k {
			out = append(out, e.Msg)
		}
	}
	return out
}
