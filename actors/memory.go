package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// The hard memory limit (PoolSpec.MemoryLimit), by sampling: a goroutine of the pool reads
// each serving worker's resident memory every memorySample, while calls run, and a worker
// past the limit is killed at once (its call fails with ErrMemoryLimit) and replaced, with
// restart reason memory_limit. RecycleSpec.MaxRSSBytes stays the soft threshold between
// calls.

// memorySample is how often the sampler reads the workers' memory.
const memorySample = 50 * time.Millisecond

type (
	// overLimit: a slot's process passed the memory limit.
	overLimit struct {
		slot string
		pid  int
		rss  int64
	}
	// killForMemory asks a worker to kill its process pid, over the limit.
	killForMemory struct {
		pid int
		err error
	}
)

// startSampling starts the memory sampler when the pool has a limit, until the pool stops.
func (p *pool) startSampling(ctx actor.Context) {
	limit := p.spec.MemoryLimit
	if limit <= 0 {
		return
	}
	reported := map[int]bool{} // a process is reported once; only the sampler's goroutine uses it
	p.every(ctx, memorySample, func(_ context.Context, send func(any)) {
		for id, c := range p.countersSnapshot() {
			pid := int(c.pid.Load())
			if pid <= 0 || reported[pid] {
				continue
			}
			if rss := rss(pid); rss > limit {
				reported[pid] = true
				send(&overLimit{slot: id, pid: pid, rss: rss})
			}
		}
	})
	p.log.Info().Int64("memory_limit", limit).Str("enforcement", "sampler").Dur("every", memorySample).
		Msg("worker memory limit enforced")
}

// countersSnapshot copies the slots' counters, for the sampler's goroutine.
func (p *pool) countersSnapshot() map[string]*slotCounters {
	p.countersMu.Lock()
	defer p.countersMu.Unlock()
	out := make(map[string]*slotCounters, len(p.counters))
	for id, c := range p.counters {
		out[id] = c
	}
	return out
}

// overMemory has the slot's worker kill its process, if it still serves from it.
func (p *pool) overMemory(ctx actor.Context, msg *overLimit) {
	s := p.byID[msg.slot]
	if s == nil || s.pid == nil {
		return
	}
	limit := p.spec.MemoryLimit
	err := fmt.Errorf("%w: resident memory %d MiB passed the pool's memory_limit of %d MiB", ErrMemoryLimit, msg.rss>>20, limit>>20)
	p.log.Error().Str("worker", s.id).Int("pid", msg.pid).Int64("rss", msg.rss).Int64("memory_limit", limit).
		Msg("worker over its memory limit: killing it")
	ctx.Send(s.pid, &killForMemory{pid: msg.pid, err: err})
}

// killForMemory kills the serving process if it is the one over the limit.
func (w *worker) killForMemory(msg *killForMemory) {
	if w.proc != nil && w.proc.PID() == msg.pid {
		w.proc.KillFor(msg.err)
	}
}
