// Package event is how phase packages report progress without printing.
// cmd/nixos-via renders events as progress bars, plain lines or JSON.
package event

import (
	"fmt"
	"time"
)

// Kind says what an Event reports.
type Kind string

const (
	// Step: a step started; Msg says what it does.
	Step Kind = "step"
	// Info: something the user should know; Msg says it.
	Info Kind = "info"
	// Warn: something that may go wrong; Msg says it.
	Warn Kind = "warn"
	// Progress: Done of Total units (Unit) of the current step are done.
	Progress Kind = "progress"
	// Done: a step finished.
	Done Kind = "done"
)

// Event is one report from a phase.
type Event struct {
	Time  time.Time         `json:"time"`
	Host  string            `json:"host,omitempty"`
	Phase string            `json:"phase,omitempty"`
	Kind  Kind              `json:"kind"`
	Msg   string            `json:"msg,omitempty"`
	Done  int64             `json:"done,omitempty"`
	Total int64             `json:"total,omitempty"`
	Unit  string            `json:"unit,omitempty"`
	Data  map[string]string `json:"data,omitempty"`
}

// Sink receives events. Implementations must be safe for concurrent use.
type Sink interface {
	Emit(Event)
}

// Discard is a Sink that drops every event.
type Discard struct{}

// Emit drops e.
func (Discard) Emit(Event) {}

// Func adapts a function to a Sink.
type Func func(Event)

// Emit calls f(e).
func (f Func) Emit(e Event) { f(e) }

// Bytes formats a byte count for progress messages (1.5 MiB, 2.0 GiB).
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
