package pyvisor

import (
	"errors"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
)

// Result is what a tool returned.
type Result = bridge.Result

// ToolError is a Python exception raised by a tool, with its traceback.
type ToolError = bridge.ToolError

// Errors a call can end with, besides *ToolError and the context's errors. Match them
// with errors.Is.
var (
	ErrUnknownPool     = errors.New("unknown pool")
	ErrPoolSaturated   = actors.ErrPoolSaturated
	ErrQueueTimeout    = actors.ErrQueueTimeout
	ErrStopped         = actors.ErrStopped // the runtime stopped, or the call's worker was stopped under it (see docs/embedding.md)
	ErrPoolFailed      = actors.ErrPoolFailed
	ErrUnknownTool     = bridge.ErrUnknownTool
	ErrInvalidArgument = bridge.ErrInvalidArgument
	ErrWorkerCrashed   = bridge.ErrWorkerCrashed
	ErrMessageTooLarge = bridge.ErrMessageTooLarge
)
