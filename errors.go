package pyvisor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/envs"
	"github.com/pyvisor/pyvisor/internal/lifecycle"
)

// Result is what a tool returned.
type Result = bridge.Result

// ToolError is a Python exception raised by a tool, with its traceback.
type ToolError = bridge.ToolError

// CallError is a call the worker refused or could not answer; it matches (errors.Is) one
// of the sentinels below, its Reason.
type CallError = bridge.CallError

// ExitError is a worker process that exited without being asked to; it matches
// ErrWorkerCrashed.
type ExitError = bridge.ExitError

// StartError is a worker that could not start: why (one of the start sentinels below, or
// an *ExitError), the tail of its stderr and a hint that says how to fix it.
type StartError = bridge.StartError

// Errors a call can end with, besides *ToolError and the context's errors: one sentinel
// each, matched with errors.Is, whichever layer returned it.
var (
	ErrUnknownPool       = actors.ErrUnknownPool // no pool of that name here, nor on any node of the cluster
	ErrPoolSaturated     = actors.ErrPoolSaturated
	ErrQueueTimeout      = actors.ErrQueueTimeout
	ErrStopped           = lifecycle.ErrStopped // the runtime stopped, or the call's worker was stopped under it (see docs/embedding.md); the one ErrStopped of the module
	ErrPoolFailed        = actors.ErrPoolFailed
	ErrUpgrading         = actors.ErrUpgrading   // a Reload of the pool is under way: a second Reload, or a Resize, waits for it to return
	ErrMemoryLimit       = actors.ErrMemoryLimit // the worker passed PoolConfig.MemoryLimit during the call: killed, replaced (it also matches ErrWorkerCrashed)
	ErrRolledBack        = actors.ErrRolledBack  // Reload's new code failed (to load, to warm up, or it crashed): the old code serves on
	ErrUnknownTool       = bridge.ErrUnknownTool
	ErrInvalidArgument   = bridge.ErrInvalidArgument
	ErrUnknownSession    = bridge.ErrUnknownSession    // a session the worker does not hold (bridge.Client), or CloseSession of one the pool does not hold
	ErrWrongCallKind     = bridge.ErrWrongCallKind     // Execute of a streaming tool, or Stream of a plain one
	ErrWorkerCrashed     = bridge.ErrWorkerCrashed     // the worker's process died during the call (*ExitError)
	ErrMessageTooLarge   = bridge.ErrMessageTooLarge   // over PoolConfig.MaxMessageBytes in a frame, or SharedMemory.MaxPayloadBytes
	ErrUnavailable       = bridge.ErrUnavailable       // the worker could not answer: its own failure (a bug, in the message), or it cancelled the call itself
	ErrProtocolViolation = bridge.ErrProtocolViolation // the worker sent what the wire contract forbids (a forged shared-memory handle); it is replaced
	ErrUnauthenticated   = bridge.ErrUnauthenticated   // bridge.Client only (TCP workers, bridge.WithTCP): the worker refused the call's token
)

// Errors Start can end with (inside a *StartError, wrapped in ErrPoolFailed when a pool
// gives up), besides ErrInvalidConfig.
var (
	ErrInterpreterNotFound   = bridge.ErrInterpreterNotFound   // the Python interpreter cannot be run
	ErrHandshakeTimeout      = bridge.ErrHandshakeTimeout      // no handshake within the handshake timeout
	ErrHandshake             = bridge.ErrHandshake             // the worker's first stdout line is not a handshake
	ErrExitedBeforeHandshake = bridge.ErrExitedBeforeHandshake // the worker exited before its handshake
	ErrExitedWhileLoading    = bridge.ErrExitedWhileLoading    // the worker exited loading its tools (an import failed)
	ErrLoadTimeout           = bridge.ErrLoadTimeout           // the tools did not load within PoolConfig.LoadTimeout
	ErrEnvironmentNotBuilt   = envs.ErrNotBuilt                // a pool's environment (PoolConfig.Requirements) is not built: pyvisor setup -config FILE
)

// unknownPool is ErrUnknownPool for pool, naming the pools this runtime runs.
func (r *Runtime) unknownPool(pool string) error {
	names := make([]string, 0, len(r.pools))
	for name := range r.pools {
		names = append(names, name)
	}
	slices.Sort(names)
	have := strings.Join(names, ", ")
	if have == "" {
		have = "none"
	}
	return fmt.Errorf("pyvisor: %w %q (pools: %s)", ErrUnknownPool, pool, have)
}
