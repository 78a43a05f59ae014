package main

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/pyvisor/pyvisor"
)

const (
	// pollEvery is how often the demo looks at the pool's stats while it recovers.
	pollEvery = 50 * time.Millisecond
	// recoveryTimeout bounds the wait for the runtime to replace failed workers.
	recoveryTimeout = 12 * time.Second
)

// stats returns the snapshot of the scenario's pool and notes its Python processes.
func (s *scenario) stats(ctx context.Context) (pyvisor.PoolStats, error) {
	all, err := s.rt.Stats(ctx)
	if err != nil {
		return pyvisor.PoolStats{}, err
	}
	for _, st := range all {
		if st.Pool == s.pool {
			for _, w := range st.Workers {
				if w.PID != 0 {
					s.pids[w.PID] = true
				}
			}
			return st, nil
		}
	}
	return pyvisor.PoolStats{}, fmt.Errorf("no stats for pool %q", s.pool)
}

// awaitInFlight waits until at least n calls are in flight in the pool.
func (s *scenario) awaitInFlight(ctx context.Context, n int) error {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		st, err := s.stats(ctx)
		if err != nil {
			return err
		}
		busy := 0
		for _, w := range st.Workers {
			busy += w.InFlight
		}
		if busy >= n {
			return nil
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
	s.tally.expect(false, fmt.Sprintf("fewer than %d calls in flight after 2s", n))
	return nil
}

// awaitRecovery polls the pool's stats until its restarts by reason reach want and
// every slot serves again, logging what it sees change on the way: a slot going down,
// a slot serving again with a new Python process, restart counts (since is when the
// faults began). It notes a failure of
// the scenario if that takes longer than recoveryTimeout.
func (s *scenario) awaitRecovery(ctx context.Context, want map[string]int, before pyvisor.PoolStats, since time.Time) (pyvisor.PoolStats, error) {
	type seen struct {
		state string
		pid   int
	}
	last := map[string]seen{}
	live := map[string]int{} // a slot's last Python process (a slot that is down has pid 0)
	for _, w := range before.Workers {
		last[w.ID] = seen{w.State, w.PID}
		live[w.ID] = w.PID
	}
	restarts := maps.Clone(before.Restarts)
	began := time.Now()
	for {
		st, err := s.stats(ctx)
		if err != nil {
			return st, err
		}
		for _, w := range st.Workers {
			prev := last[w.ID]
			switch {
			case w.State == prev.state && w.PID == prev.pid:
				continue
			case w.State != "ready":
				s.log.Warn().Str("worker", w.ID).Int("old_pid", prev.pid).Msg("demo sees the worker down: the runtime detected its failure")
			default:
				if _, ok := s.replaced[w.ID]; !ok && live[w.ID] != 0 && live[w.ID] != w.PID {
					s.replaced[w.ID] = live[w.ID]
				}
				s.log.Info().Str("worker", w.ID).Int("pid", w.PID).Int("was_pid", s.replaced[w.ID]).
					Msg("demo sees the worker replaced: a fresh Python process serves the slot")
			}
			last[w.ID] = seen{w.State, w.PID}
			if w.PID != 0 {
				live[w.ID] = w.PID
			}
		}
		if !maps.Equal(restarts, st.Restarts) {
			restarts = maps.Clone(st.Restarts)
			s.log.Info().Any("restarts", restarts).Msg("demo sees the pool's restart counts by reason")
		}
		if recovered(st, want, s.workers) {
			s.log.Info().Int("workers", len(st.Workers)).Any("restarts", st.Restarts).
				Stringer("since_faults", time.Since(since).Round(time.Millisecond)).Msg("the pool is back to full size")
			return st, nil
		}
		if time.Since(began) > recoveryTimeout {
			s.tally.expect(false, fmt.Sprintf("the pool did not recover within %v: state %s, restarts %v, want %v", recoveryTimeout, st.State, st.Restarts, want))
			return st, nil
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return st, err
		}
	}
}

// recovered says whether st shows at least the restarts of want and n workers serving.
func recovered(st pyvisor.PoolStats, want map[string]int, n int) bool {
	for reason, count := range want {
		if st.Restarts[reason] < count {
			return false
		}
	}
	ready := 0
	for _, w := range st.Workers {
		if w.State == "ready" {
			ready++
		}
	}
	return st.State == "running" && ready == n && len(st.Workers) == n
}

// sleep waits d, or less if ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
