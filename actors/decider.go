package actors

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/supervision"
)

// Why a worker fails. A Worker actor panics with one of these; its supervisor restarts
// it, and the pool reads the reason back from the supervisor's event.
type (
	// startFailure: the Python process did not start (see the *bridge.StartError).
	startFailure struct{ err error }
	// crash: the Python process exited on its own; calls links the spans of the calls
	// it was running.
	crash struct {
		err   error
		calls []trace.Link
	}
	// stuckBody: a cancelled call's Python body was still running its grace after its
	// cancellation (it ignores cancellation, or the event loop is wedged).
	stuckBody struct {
		tool  string
		grace time.Duration
		calls []trace.Link
	}
	// heartbeatFailure: MaxMissed heartbeats in a row went unanswered.
	heartbeatFailure struct {
		misses int
		last   error
		calls  []trace.Link
	}
)

func (f *startFailure) Error() string { return "worker did not start: " + f.err.Error() }
func (f *startFailure) Unwrap() error { return f.err }
func (c *crash) Error() string        { return c.err.Error() }
func (c *crash) Unwrap() error        { return c.err }
func (f *stuckBody) Error() string {
	return fmt.Sprintf("a cancelled call of tool %q was still running %v after its cancellation", f.tool, f.grace)
}
func (h *heartbeatFailure) Error() string {
	return fmt.Sprintf("%d heartbeats in a row unanswered (last: %v)", h.misses, h.last)
}

// Restart reasons, the label values of restart counts.
const (
	ReasonCrash     = "crash"
	ReasonHeartbeat = "heartbeat"
	ReasonStuckBody = "stuck_body"
	ReasonMemory    = "memory_limit"
	ReasonStart     = "start_failed"
	ReasonOther     = "other"
)

// failureLinks are the spans of the calls a failure cut short: the restart it causes
// links back to them.
func failureLinks(v any) []trace.Link {
	if p, ok := v.(*supervision.Panic); ok {
		v = p.Value
	}
	switch f := v.(type) {
	case *crash:
		return f.calls
	case *heartbeatFailure:
		return f.calls
	case *stuckBody:
		return f.calls
	}
	return nil
}

// failureReason maps a failed worker's panic value to its restart reason. It is the one
// place that decides what a bridge error means for supervision.
func failureReason(v any) (string, error) {
	if p, ok := v.(*supervision.Panic); ok {
		v = p.Value
	}
	switch f := v.(type) {
	case *startFailure:
		return ReasonStart, f.err
	case *crash:
		if errors.Is(f.err, ErrMemoryLimit) {
			return ReasonMemory, f.err
		}
		return ReasonCrash, f.err
	case *heartbeatFailure:
		return ReasonHeartbeat, f
	case *stuckBody:
		return ReasonStuckBody, f
	case error:
		if errors.Is(f, bridge.ErrWorkerCrashed) {
			return ReasonCrash, f
		}
		return ReasonOther, f
	}
	return ReasonOther, fmt.Errorf("%v", v)
}
