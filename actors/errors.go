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
	// ErrUpgrading: a Reload of the pool is under way (a second Reload, or a Resize, is
	// refused until it returns).
	ErrUpgrading = errors.New("an upgrade of the pool is under way")
	// ErrMemoryLimit: the worker's resident memory passed its pool's memory limit while it
	// ran the call; the worker was killed and is replaced.
	ErrMemoryLimit = errors.New("memory limit exceeded")
	// ErrRolledBack: a Reload's new code did not start, failed its warm-up, or crashed;
	// the old code serves on, and the error carries the cause.
	ErrRolledBack = errors.New("upgrade rolled back")
)
