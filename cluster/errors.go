package cluster

import (
	"context"
	"errors"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/lifecycle"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
)

// Sentinel errors of the cluster. Match them with errors.Is.
var (
	// ErrNodeLost: the node running the call left the cluster, or its connection broke,
	// before the call ended. Whether the call ran there is not known; an idempotent call
	// is retried once on another node first.
	ErrNodeLost = errors.New("node lost")
	// ErrDraining: the node asked is stopping and took no new call. Nothing ran: the
	// call goes to another node, so a caller sees it only when every node hosting the
	// pool is stopping.
	ErrDraining = errors.New("node draining")
)

// RemoteError is a call's failure on the node that ran it. It matches (errors.Is) what
// it matched there: ErrUnknownTool, ErrWorkerCrashed, context.DeadlineExceeded…; a
// tool's exception is a *bridge.ToolError, found with errors.As.
type RemoteError struct {
	Node    string // the node that ran the call
	Message string // the error's text there
	err     error  // the sentinel or *ToolError it matched
}

func (e *RemoteError) Error() string { return "on node " + e.Node + ": " + e.Message }

// Unwrap returns what the error matched on its node.
func (e *RemoteError) Unwrap() error { return e.err }

// codes are the errors a call's failure is matched against, in order, by their code on
// the wire. A *bridge.ToolError is code "tool_error"; anything else "error".
var errorCodes = []struct {
	code string
	err  error
}{
	{"deadline_exceeded", context.DeadlineExceeded},
	{"cancelled", context.Canceled},
	{"pool_failed", actors.ErrPoolFailed}, // before crashed: it wraps the last worker failure
	{"stopped", lifecycle.ErrStopped},
	{"unknown_pool", actors.ErrUnknownPool},
	{"pool_saturated", actors.ErrPoolSaturated},
	{"queue_timeout", actors.ErrQueueTimeout},
	{"unknown_tool", bridge.ErrUnknownTool},
	{"invalid_argument", bridge.ErrInvalidArgument},
	{"unknown_session", bridge.ErrUnknownSession},
	{"wrong_call_kind", bridge.ErrWrongCallKind},
	{"worker_crashed", bridge.ErrWorkerCrashed},
	{"message_too_large", bridge.ErrMessageTooLarge},
	{"unavailable", bridge.ErrUnavailable},
	{"node_lost", ErrNodeLost},
	{"draining", ErrDraining},
}

// encodeError is err as the wire carries it back to the calling node.
func encodeError(err error) *clusterv1.Error {
	if err == nil {
		return nil
	}
	var te *bridge.ToolError
	if errors.As(err, &te) {
		return &clusterv1.Error{Code: "tool_error", Message: err.Error(), Tool: te.Tool, Type: te.Type, Traceback: te.Traceback, Exception: te.Message}
	}
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return &clusterv1.Error{Code: c.code, Message: err.Error()}
		}
	}
	return &clusterv1.Error{Code: "error", Message: err.Error()}
}

// decodeError is the error a failure from node reads as on the calling node.
func decodeError(node, correlationID string, e *clusterv1.Error) error {
	if e == nil {
		return nil
	}
	re := &RemoteError{Node: node, Message: e.GetMessage()}
	if e.GetCode() == "tool_error" {
		re.err = &bridge.ToolError{Tool: e.GetTool(), Type: e.GetType(), Message: e.GetException(), Traceback: e.GetTraceback(), CorrelationID: correlationID}
		return re
	}
	for _, c := range errorCodes {
		if c.code == e.GetCode() {
			re.err = c.err
			return re
		}
	}
	re.err = errors.New(e.GetMessage())
	return re
}
