package actors

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pyvisor/pyvisor/telemetry"
)

// startRecycling starts the pool's recycle ticker when a recycle rule needs one (age,
// memory, GPU memory): it sends the pool a recycleCheck on each tick until the pool
// stops. GPU memory is read on the ticker's goroutine, not the pool's.
func (p *pool) startRecycling(ctx actor.Context) {
	r := p.spec.Recycle
	var gpu *gpuWatch
	if r.MaxGPUBytes > 0 {
		gpu = newGPUWatch(p.log)
	}
	if r.MaxAge <= 0 && r.MaxRSSBytes <= 0 && gpu == nil {
		return
	}
	p.every(ctx, recycleInterval(r.MaxAge), func(tctx context.Context, send func(any)) {
		send(&recycleCheck{gpu: gpu.poll(tctx)})
	})
}

func recycleInterval(maxAge time.Duration) time.Duration {
	if maxAge > 0 && maxAge/4 < time.Second {
		return max(maxAge/4, 10*time.Millisecond)
	}
	return time.Second
}

// recycleDue: the slot has served its calls. Not during an upgrade, which replaces the
// process itself (recycleDueNow catches up after it).
func (p *pool) recycleDue(s *slot) bool {
	return p.upgrade == nil && s.old == nil && p.spec.Recycle.MaxCalls > 0 && s.calls >= p.spec.Recycle.MaxCalls
}

// recycleDueNow recycles the idle slots whose calls came due while an upgrade ran.
func (p *pool) recycleDueNow(ctx actor.Context) {
	for _, s := range p.slots {
		if s.inc != 0 && !s.removed && s.inFlight == 0 && p.recycleDue(s) {
			p.recycle(ctx, s, "max_calls")
		}
	}
}

func (p *pool) recycle(ctx actor.Context, s *slot, reason string) {
	p.recycled[reason]++
	p.spec.Metrics.WorkerExits.Add(context.Background(), 1, p.attrs, metric.WithAttributes(
		attribute.String(telemetry.LabelWorker, s.id), attribute.String(telemetry.LabelReason, "recycle_"+reason)))
	p.down(s)
	ctx.Send(s.pid, &recycleWorker{reason: reason})
}

// recycleIdle recycles each serving worker with nothing in flight that is past its age,
// its memory or its GPU memory.
func (p *pool) recycleIdle(ctx actor.Context, check *recycleCheck) {
	if p.upgrade != nil {
		return // the upgrade replaces the processes itself; the next check catches up
	}
	r := p.spec.Recycle
	for _, s := range p.slots {
		if s.inc == 0 || s.removed || s.inFlight > 0 || s.old != nil { // an old process serves its pinned sessions
			continue
		}
		switch {
		case r.MaxAge > 0 && time.Since(s.started) >= r.MaxAge:
			p.recycle(ctx, s, "max_age")
		case r.MaxRSSBytes > 0 && rss(s.procPID()) >= r.MaxRSSBytes:
			p.recycle(ctx, s, "max_memory")
		case r.MaxGPUBytes > 0 && check.gpu[s.procPID()] > r.MaxGPUBytes:
			p.recycle(ctx, s, "max_gpu_memory")
		}
	}
}

// rss reads the resident memory of a process from /proc, 0 if unknown.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
