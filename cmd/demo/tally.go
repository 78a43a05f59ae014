package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/pyvisor/pyvisor"
)

// tally counts the calls the scenario makes: how many, how each failed, and how long
// the successful ones took.
type tally struct {
	mu        sync.Mutex
	calls     int
	errors    map[string]int // by kind
	latencies []time.Duration
	failures  []string // what did not go as expected
}

func newTally() *tally { return &tally{errors: map[string]int{}} }

// record counts one call that took d and ended with err; the latency of a successful
// one goes into the percentiles.
func (t *tally) record(d time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if err != nil {
		t.errors[errorKind(err)]++
		return
	}
	t.latencies = append(t.latencies, d)
}

// recordStream counts a stream as one call; its duration (it paces its chunks) stays
// out of the percentiles.
func (t *tally) recordStream(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if err != nil {
		t.errors[errorKind(err)]++
	}
}

// expect notes a failure of the scenario when ok is false.
func (t *tally) expect(ok bool, what string) bool {
	if !ok {
		t.mu.Lock()
		t.failures = append(t.failures, what)
		t.mu.Unlock()
	}
	return ok
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of the successful
// calls' latencies, 0 when there are none.
func (t *tally) percentile(p float64) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.latencies) == 0 {
		return 0
	}
	s := slices.Clone(t.latencies)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// errorKind names how a call failed, for the summary.
func errorKind(err error) string {
	var toolErr *pyvisor.ToolError
	switch {
	case errors.As(err, &toolErr):
		return "tool_error"
	case errors.Is(err, pyvisor.ErrUnknownTool):
		return "unknown_tool"
	case errors.Is(err, pyvisor.ErrInvalidArgument):
		return "invalid_argument"
	case errors.Is(err, pyvisor.ErrWorkerCrashed):
		return "worker_crashed"
	case errors.Is(err, pyvisor.ErrPoolSaturated):
		return "pool_saturated"
	case errors.Is(err, pyvisor.ErrQueueTimeout):
		return "queue_timeout"
	case errors.Is(err, pyvisor.ErrPoolFailed):
		return "pool_failed"
	case errors.Is(err, pyvisor.ErrStopped):
		return "stopped"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, pyvisor.ErrNodeLost):
		return "node_lost"
	}
	return "other"
}
