package supervision

import (
	"errors"

	"github.com/pyvisor/pyvisor/internal/lifecycle"
)

var (
	// ErrIntensityExceeded: more than MaxRestarts restarts happened within Within.
	ErrIntensityExceeded = errors.New("supervision: restart intensity exceeded")
	// ErrStartFailed: a child failed to start, so its supervisor failed to start.
	ErrStartFailed = errors.New("supervision: child failed to start")
	// ErrChildNotFound: no child spec has the given id.
	ErrChildNotFound = errors.New("supervision: child not found")
	// ErrChildRunning: the operation needs a child that is not running.
	ErrChildRunning = errors.New("supervision: child is running")
	// ErrChildExists: a child spec with the same id is already present.
	ErrChildExists = errors.New("supervision: child already exists")
	// ErrInvalidSpec: a Spec or Child is not valid; the message names the field.
	ErrInvalidSpec = errors.New("supervision: invalid spec")
	// ErrStopped: the supervisor is stopping or has stopped (the module's one
	// ErrStopped: pyvisor.ErrStopped matches it).
	ErrStopped = lifecycle.ErrStopped
)

// ErrShutdown is the Reason of an ordered stop (Elixir's :shutdown).
var ErrShutdown = errors.New("supervision: shutdown")
