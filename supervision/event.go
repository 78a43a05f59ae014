package supervision

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Event is one supervisor decision. Every event carries the supervisor's PID
// and the clock's time of the decision.
type Event interface {
	// Header returns the fields every event has.
	Header() EventHeader
}

// EventHeader says which supervisor decided, and when.
type EventHeader struct {
	Supervisor *actor.PID
	Time       time.Time
}

// Header implements Event.
func (h EventHeader) Header() EventHeader { return h }

// ChildStarted: a child handled *actor.Started (first start, or a start by
// StartChild/RestartChild).
type ChildStarted struct {
	EventHeader
	ID  string
	PID *actor.PID
}

// ChildFailed: a child exited abnormally (it panicked). Starting is true when it
// panicked while handling *actor.Started.
type ChildFailed struct {
	EventHeader
	ID       string
	PID      *actor.PID
	Reason   any   // the panic value
	Stack    Stack // where it panicked (Stack.String formats it)
	Message  any   // the message being handled
	Starting bool
}

// ChildExited: a child stopped itself (a normal exit).
type ChildExited struct {
	EventHeader
	ID  string
	PID *actor.PID
}

// RestartDelayed: a backoff delay was drawn before restarting ID.
type RestartDelayed struct {
	EventHeader
	ID      string
	Attempt int // 0 for the child's first restart within the window
	Delay   time.Duration
}

// ChildRestarted: a child restarted and handled *actor.Started again. Cause
// is the ID of the child whose exit caused it (itself, or a sibling under
// one_for_all and rest_for_one).
type ChildRestarted struct {
	EventHeader
	ID    string
	PID   *actor.PID
	Cause string
}

// ChildStopped: the supervisor stopped a child. Killed is true when it was
// stopped without (or after the timeout of) a graceful stop.
type ChildStopped struct {
	EventHeader
	ID     string
	PID    *actor.PID
	Reason error
	Killed bool
}

// IntensityExceeded: a restart was due but more than MaxRestarts happened within
// Within; the supervisor now stops its children and fails.
type IntensityExceeded struct {
	EventHeader
	ID          string // the child whose exit was one too many
	Restarts    int    // restarts within the window, the refused one included
	MaxRestarts int
	Within      time.Duration
}

// Escalated: the supervisor failed (after stopping its children) and hands
// Reason to its parent, or to the embedder for a top-level supervisor.
type Escalated struct {
	EventHeader
	Reason error
}

// SupervisorStopped: the supervisor stopped all its children and stopped,
// on request or because its parent stopped it.
type SupervisorStopped struct {
	EventHeader
}
