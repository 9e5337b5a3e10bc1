package install

import (
	"sync"

	"github.com/nixos-via/nixos-via/internal/event"
)

// recorder is an event.Sink that keeps what the steps report.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Emit(e event.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}
