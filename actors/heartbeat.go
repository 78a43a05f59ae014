package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/telemetry"
)

type (
	heartbeatTick struct{}
	heartbeatPong struct {
		seq uint64
		err error
		rtt time.Duration
	}
)

// heartbeat is a Worker's child actor: it pings the worker's process every Interval;
// MaxMissed unanswered pings in a row make it tell the worker, which then fails.
type heartbeat struct {
	spec     HeartbeatSpec
	client   *bridge.Client
	worker   *actor.PID
	counters *slotCounters
	log      zerolog.Logger
	tracer   trace.Tracer // used when spec.Trace
	metrics  *telemetry.Metrics
	attrs    metric.MeasurementOption // pool, worker

	seq    uint64
	misses int
	timer  *time.Timer
}

func (h *heartbeat) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		// A new heartbeat (a new process) has missed nothing yet.
		h.metrics.HeartbeatMisses.Record(context.Background(), 0, h.attrs)
		h.schedule(ctx, h.spec.InitialDelay)
	case *heartbeatTick:
		h.ping(ctx)
	case *heartbeatPong:
		h.pong(ctx, msg)
	case *actor.Stopping, *actor.Restarting:
		if h.timer != nil {
			h.timer.Stop()
		}
	}
}

func (h *heartbeat) schedule(ctx actor.Context, d time.Duration) {
	system, self := ctx.ActorSystem(), ctx.Self()
	h.timer = time.AfterFunc(d, func() { system.Root.Send(self, &heartbeatTick{}) })
}

func (h *heartbeat) ping(ctx actor.Context) {
	h.seq++
	h.counters.pings.Add(1)
	h.metrics.HeartbeatPings.Add(context.Background(), 1, h.attrs)
	system, self, seq, client, timeout := ctx.ActorSystem(), ctx.Self(), h.seq, h.client, h.spec.Timeout
	traced, tracer := h.spec.Trace, h.tracer
	go func() {
		pctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if traced {
			var span trace.Span
			pctx, span = tracer.Start(pctx, "heartbeat", trace.WithAttributes(attribute.Int64("pyvisor.heartbeat.seq", int64(seq))))
			defer span.End()
		}
		pong, err := client.Heartbeat(pctx, seq, fmt.Sprintf("hb-%d", seq))
		system.Root.Send(self, &heartbeatPong{seq: seq, err: err, rtt: pong.RTT})
	}()
}

func (h *heartbeat) pong(ctx actor.Context, msg *heartbeatPong) {
	bg := context.Background()
	if msg.err == nil {
		h.counters.pongs.Add(1)
		h.metrics.HeartbeatPongs.Add(bg, 1, h.attrs)
		h.metrics.HeartbeatLatency.Record(bg, msg.rtt.Seconds(), h.attrs)
		if h.misses != 0 {
			h.metrics.HeartbeatMisses.Record(bg, 0, h.attrs)
		}
		h.misses = 0
		h.schedule(ctx, h.spec.Interval)
		return
	}
	h.counters.misses.Add(1)
	h.misses++
	h.metrics.HeartbeatFailures.Add(bg, 1, h.attrs, metric.WithAttributes(attribute.String(telemetry.LabelReason, pingFailure(msg.err))))
	h.metrics.HeartbeatMisses.Record(bg, int64(h.misses), h.attrs)
	h.log.Warn().Err(msg.err).Uint64("seq", msg.seq).Int("misses", h.misses).Int("max_missed", h.spec.MaxMissed).Msg("heartbeat missed")
	if h.misses >= h.spec.MaxMissed {
		ctx.Send(h.worker, &heartbeatFailed{from: ctx.Self(), misses: h.misses, last: msg.err})
		return
	}
	h.schedule(ctx, h.spec.Interval)
}

// pingFailure is the reason label of a missed heartbeat.
func pingFailure(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, bridge.ErrWorkerCrashed):
		return "crashed"
	case errors.Is(err, bridge.ErrStopped):
		return "stopped"
	case errors.Is(err, bridge.ErrUnavailable):
		return "unavailable"
	}
	return "error"
}
