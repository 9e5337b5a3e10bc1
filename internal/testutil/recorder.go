package testutil

import (
	"bytes"
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

// SyncBuffer is a bytes.Buffer safe to read while another goroutine
// writes it (a command's output, a signal handler's message).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
