package actors

import (
	"errors"

	"github.com/pyvisor/pyvisor/internal/lifecycle"
)

// Sentinel errors of the pool. Match them with errors.Is.
var (
	// ErrPoolSaturated: every worker is busy and the queue is full.
	ErrPoolSaturated = errors.New("pool saturated")
	// ErrQueueTimeout: the call waited in the queue longer than the queue timeout.
	ErrQueueTimeout = errors.New("queue timeout")
	// ErrStopped: the pool is stopping or stopped; it takes no more calls (the module's
	// one ErrStopped).
	ErrStopped = lifecycle.ErrStopped
	// ErrPoolFailed: the pool's workers kept failing past the restart intensity.
	ErrPoolFailed = errors.New("pool failed")
	// ErrUnknownPool: no pool of that name runs here (or, in a cluster, on any node).
	ErrUnknownPool = errors.New("unknown pool")
)
