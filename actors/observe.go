package actors

import (
	"context"
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/telemetry"
)

// startRestartSpan opens the span of a worker's restart, linked to the calls its
// failure cut short, with the reason and the failure's stack trace.
func (p *pool) startRestartSpan(s *slot, ev *supervision.ChildFailed, reason string, err error) {
	if s.restart != nil {
		s.restart.End()
	}
	_, s.restart = p.tracer.Start(context.Background(), "restart "+s.id,
		trace.WithLinks(failureLinks(ev.Reason)...),
		trace.WithAttributes(
			attribute.String("pyvisor.pool", p.spec.Name),
			attribute.String("pyvisor.worker", s.id),
			attribute.String("pyvisor.restart.reason", reason),
			attribute.String("pyvisor.failure.stack", ev.Stack.String()),
		))
	s.restart.RecordError(err)
}

func (p *pool) supervisionEvent(ctx actor.Context, e supervision.Event) {
	switch ev := e.(type) {
	case *supervision.ChildStarted:
		if s := p.byID[ev.ID]; s != nil {
			s.pid = ev.PID
		}
	case *supervision.ChildFailed:
		reason, err := failureReason(ev.Reason)
		p.lastFailure = err
		p.restarts[reason]++
		wa := metric.WithAttributes(attribute.String(telemetry.LabelWorker, ev.ID), attribute.String(telemetry.LabelReason, reason))
		p.spec.Metrics.WorkerExits.Add(context.Background(), 1, p.attrs, wa)
		p.spec.Metrics.WorkerRestarts.Add(context.Background(), 1, p.attrs, wa)
		if s := p.byID[ev.ID]; s != nil {
			p.down(s)
			p.startRestartSpan(s, ev, reason, err)
		}
		p.upgradeCrashed(ctx, ev.ID, err)
		if p.state == StateFailed {
			return // the pool has given up and said why, once
		}
		if p.state == StateDraining { // a late failure of a pool that stops (or failed): not restarted for long
			p.log.Warn().Str("worker", ev.ID).Int("slot", p.slotIndex(ev.ID)).Str("reason", reason).Err(err).Msg("worker failed while the pool stops")
			return
		}
		var startErr *bridge.StartError
		if p.state == StateStarting && errors.As(err, &startErr) && startErr.Deterministic() {
			// Trying again would fail the same way: the pool fails now, with the cause,
			// and Start returns it (later failures back off under the intensity).
			p.fail(ctx, err)
			return
		}
		p.log.Warn().Str("worker", ev.ID).Int("slot", p.slotIndex(ev.ID)).Str("reason", reason).Err(err).Msg("worker failed; its supervisor restarts it")
	case *supervision.ChildRestarted:
		p.spec.Metrics.SupervisorRestarts.Add(context.Background(), 1, p.attrs)
	case *supervision.ChildStopped:
		p.spec.Metrics.WorkerExits.Add(context.Background(), 1, p.attrs, metric.WithAttributes(
			attribute.String(telemetry.LabelWorker, ev.ID), attribute.String(telemetry.LabelReason, "stop")))
	case *supervision.IntensityExceeded:
		p.log.Error().Str("worker", ev.ID).Int("slot", p.slotIndex(ev.ID)).Int("restarts", ev.Restarts).Dur("within", ev.Within).Msg("worker restart intensity exceeded; the pool gives up")
	}
}

// zeroMetrics makes the pool's series exist from its start (at 0), so dashboards and
// alerts see "nothing happened" rather than "no data".
func (p *pool) zeroMetrics() {
	bg, m := context.Background(), p.spec.Metrics
	for _, reason := range []string{"queue_full", "queue_timeout", "stopped"} {
		m.Rejections.Add(bg, 0, p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelReason, reason)))
	}
	m.SupervisorRestarts.Add(bg, 0, p.attrs)
	m.SupervisorEscalated.Add(bg, 0, p.attrs)
	m.Sessions.Record(bg, 0, p.attrs)
	m.QueueDepth.Record(bg, 0, p.attrs)
}

// recordWorkers sets the workers-by-state gauge.
func (p *pool) recordWorkers() {
	ready, loading, down := 0, 0, 0
	for _, s := range p.slots {
		switch {
		case s.removed:
		case s.inc != 0:
			ready++
		case s.loading != 0:
			loading++
		default:
			down++
		}
	}
	bg := context.Background()
	p.spec.Metrics.Workers.Record(bg, int64(ready), p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelState, "ready")))
	p.spec.Metrics.Workers.Record(bg, int64(loading), p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelState, "loading")))
	p.spec.Metrics.Workers.Record(bg, int64(down), p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelState, "down")))
}

// observeMemory reports each serving worker's resident memory (at collection time, on
// the collector's goroutine: it reads only the counters' atomics).
func (p *pool) observeMemory(record func(int64, ...attribute.KeyValue)) {
	p.countersMu.Lock()
	defer p.countersMu.Unlock()
	for id, c := range p.counters {
		if pid := c.pid.Load(); pid > 0 {
			if b := rss(int(pid)); b > 0 {
				record(b, attribute.String(telemetry.LabelPool, p.spec.Name), attribute.String(telemetry.LabelWorker, id))
			}
		}
	}
}

// observeVersions reports the code version of each serving worker.
func (p *pool) observeVersions(record func(...attribute.KeyValue)) {
	p.countersMu.Lock()
	defer p.countersMu.Unlock()
	for id, c := range p.counters {
		if v := c.code.Load(); v != nil && *v != "" {
			record(attribute.String(telemetry.LabelPool, p.spec.Name), attribute.String(telemetry.LabelWorker, id),
				attribute.String(telemetry.LabelVersion, *v))
		}
	}
}

func (p *pool) stats() *messages.PoolStats {
	st := &messages.PoolStats{
		Pool:      p.spec.Name,
		State:     p.state,
		Err:       p.err,
		Queued:    len(p.queue),
		Restarts:  copyCounts(p.restarts),
		Recycled:  copyCounts(p.recycled),
		Rejected:  copyCounts(p.rejected),
		Completed: p.completed,
		Upgrading: p.upgrade != nil,
		Sessions:  len(p.sessions),
	}
	if p.spec.MemoryLimit > 0 {
		st.MemoryEnforcement = "sampler"
	}
	for _, s := range p.slots {
		if s.removed {
			continue
		}
		st.Workers = append(st.Workers, messages.WorkerStats{
			ID: s.id, Slot: s.index, PID: s.procPID(), Address: s.address(), State: s.state(), Version: s.version(), InFlight: s.inFlight, Calls: s.total, Started: s.started,
			HeartbeatPings: s.counters.pings.Load(), HeartbeatMisses: s.counters.misses.Load(),
		})
	}
	return st
}

func copyCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
