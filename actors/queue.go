package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/telemetry"
)

// pending is a call waiting for a worker.
type pending struct {
	id      uint64
	msg     any             // *messages.Execute or *messages.ExecuteStream
	caller  context.Context // the caller's: it ends when the caller gives up
	reply   messages.Replier
	cid     string // correlation id
	session string
	ctx     context.Context // the span the call continues from (receive, then queue wait)
	wait    trace.Span      // open while the call is queued
	queued  time.Time       // when it entered the queue
	expiry  *time.Timer     // its queue timeout, stopped once it leaves the queue
}

// done is called when the call leaves the queue (or never entered it): its queue
// timeout is stopped, so no timer outlives the call (or the pool), and its queue-wait
// span, if any, ends with err as its outcome.
func (q *pending) done(err error) {
	if q.expiry != nil {
		q.expiry.Stop()
		q.expiry = nil
	}
	if q.wait == nil {
		return
	}
	if err != nil {
		q.wait.SetStatus(codes.Error, err.Error())
	}
	q.wait.End()
	q.wait = nil
}

// callerGone returns the caller's context error once it has given up on the call.
func (q *pending) callerGone() error { return q.caller.Err() }

// pending is a call as it arrives: from the message being received.
func (p *pool) pending(ctx actor.Context, msg any) *pending {
	caller, reply, call := callFields(msg)
	q := &pending{msg: msg, caller: caller, reply: reply, session: call.SessionID, ctx: p.MessageContext()}
	if h := ctx.MessageHeader(); h != nil {
		q.cid = h.Get(messages.HeaderCorrelationID)
	}
	return q
}

// refuse answers a call the pool takes no more (it failed, or it is draining) and
// reports whether it did.
func (p *pool) refuse(ctx actor.Context, q *pending) bool {
	switch p.state {
	case StateFailed:
		p.reply(ctx, q, fmt.Errorf("pool %s: %w: %w", p.spec.Name, ErrPoolFailed, p.err))
		return true
	case StateDraining:
		p.reject("stopped")
		p.reply(ctx, q, fmt.Errorf("pool %s: %w", p.spec.Name, ErrStopped))
		return true
	}
	return false
}

// admit takes a new call: dispatch, queue or reject.
func (p *pool) admit(ctx actor.Context, q *pending) {
	if p.refuse(ctx, q) {
		return
	}
	if s := p.pick(q.session); s != nil && len(p.queue) == 0 {
		p.send(ctx, s, q)
		return
	}
	if len(p.queue) >= p.spec.QueueSize {
		p.dropAbandoned(ctx) // calls whose callers gave up do not hold places
	}
	if len(p.queue) >= p.spec.QueueSize {
		p.reject("queue_full")
		p.reply(ctx, q, fmt.Errorf("pool %s: %w: %d calls queued", p.spec.Name, ErrPoolSaturated, len(p.queue)))
		return
	}
	p.enqueue(ctx, q, false)
	p.dispatch(ctx)
}

func (p *pool) enqueue(ctx actor.Context, q *pending, front bool) {
	p.queueSeq++
	q.id = p.queueSeq
	if q.ctx == nil {
		q.ctx = context.Background()
	}
	if q.wait == nil && trace.SpanContextFromContext(q.ctx).IsSampled() {
		q.ctx, q.wait = p.tracer.Start(q.ctx, "queue wait", trace.WithAttributes(
			attribute.String("pyvisor.pool", p.spec.Name), attribute.Int("pyvisor.queue.depth", len(p.queue))))
	}
	if q.queued.IsZero() {
		q.queued = time.Now()
	}
	if front {
		p.queue = append([]*pending{q}, p.queue...)
	} else {
		p.queue = append(p.queue, q)
	}
	p.recordQueue()
	system, self, id := ctx.ActorSystem(), ctx.Self(), q.id
	if q.expiry != nil {
		q.expiry.Stop() // a requeued call starts a new wait
	}
	q.expiry = time.AfterFunc(p.spec.QueueTimeout, func() { system.Root.Send(self, &queueExpired{id: id}) })
}

// requeue takes back a call to run again (an idempotent call whose worker died under
// it, or one granted a process that exited before it was sent): first in line.
func (p *pool) requeue(ctx actor.Context, r *redispatch) {
	q := p.pending(ctx, r.msg)
	if p.refuse(ctx, q) {
		return
	}
	p.enqueue(ctx, q, true)
	p.dispatch(ctx)
}

// dropAbandoned answers and removes the queued calls whose callers have gone.
func (p *pool) dropAbandoned(ctx actor.Context) { p.sweep(ctx, false) }

// dispatch sends queued calls, in order, to workers that can take them. A strict
// session call waiting for its busy worker does not hold up the calls behind it.
func (p *pool) dispatch(ctx actor.Context) { p.sweep(ctx, true) }

// sweep goes through the queue in order: a call whose caller has gone is answered and
// dropped (nobody waits for it: it is not run), and with send, a call a worker can take
// now is sent to it.
func (p *pool) sweep(ctx actor.Context, send bool) {
	kept := p.queue[:0]
	for _, q := range p.queue {
		if err := q.callerGone(); err != nil {
			p.reply(ctx, q, err)
			continue
		}
		if send {
			if s := p.pick(q.session); s != nil {
				p.send(ctx, s, q)
				continue
			}
		}
		kept = append(kept, q)
	}
	clear(p.queue[len(kept):])
	if len(kept) != len(p.queue) {
		p.queue = kept
		p.recordQueue()
	}
}

// pick chooses a worker for a call, or nil if it must wait.
func (p *pool) pick(session string) *slot {
	if p.held(session) {
		return nil // its state is moving to the new code: it waits, in the queue
	}
	if session != "" {
		if owner, ok := p.sessions[session]; ok {
			if owner.onOld(session) && owner.old.gone() {
				delete(owner.pinned, session) // its old process died, and its state with it
			}
			if owner.onOld(session) { // pinned to its old code until it ends or moves
				if p.oldAvailable(owner) {
					return owner
				}
				return nil
			}
			if p.available(owner) {
				return owner
			}
			if p.spec.StrictAffinity {
				return nil
			}
		}
	}
	var best *slot
	n := len(p.slots)
	_, bound := p.sessions[session]
	for i := range n {
		s := p.slots[(p.next+i)%n]
		if session != "" && !bound && p.moving(s) {
			continue // its sessions are moving: a new one would miss the move
		}
		if p.available(s) && (best == nil || s.inFlight < best.inFlight) {
			best = s
		}
	}
	if best != nil {
		p.next = (p.next + 1) % max(n, 1)
		if session != "" {
			if _, bound := p.sessions[session]; !bound {
				p.bound(session, best)
			}
		}
	}
	return best
}

// available: the slot serves, has room for a call, and its process has not just
// exited (the pool hears of that a moment later).
func (p *pool) available(s *slot) bool {
	return s.inc != 0 && !s.removed && s.inFlight < p.spec.MaxConcurrent && !p.recycleDue(s) && !s.proc.gone()
}

func (p *pool) send(ctx actor.Context, s *slot, q *pending) {
	proc, inc := s.proc, s.inc
	if s.onOld(q.session) {
		proc, inc = s.old, s.oldInc
		s.oldInFlight++
	} else {
		s.inFlight++
	}
	proc.begin()
	if q.session != "" {
		if s.sessionCalls == nil {
			s.sessionCalls = map[string]int{}
		}
		s.sessionCalls[q.session]++
		p.recent.touch(q.session, time.Now())
	}
	q.done(nil)
	if !q.queued.IsZero() {
		p.spec.Metrics.QueueWait.Record(context.Background(), time.Since(q.queued).Seconds(), p.attrs)
	}
	callCtx := callContext(q.ctx, q.caller, q.cid)
	q.reply.Reply(&grant{
		system: ctx.ActorSystem(), pool: ctx.Self(), proc: proc, ctx: callCtx, cid: q.cid,
		slot: s.id, inc: inc, session: q.session, untrack: proc.track(trace.SpanContextFromContext(callCtx)),
	})
}

func (p *pool) expire(ctx actor.Context, id uint64) {
	for i, q := range p.queue {
		if q.id == id {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			p.recordQueue()
			p.reject("queue_timeout")
			p.reply(ctx, q, fmt.Errorf("pool %s: %w after %v", p.spec.Name, ErrQueueTimeout, p.spec.QueueTimeout))
			return
		}
	}
}

// reply answers a call the pool will not run.
func (p *pool) reply(ctx actor.Context, q *pending, err error) {
	q.done(err)
	q.reply.Reply(&messages.ExecuteResult{Err: err})
}

func (p *pool) failQueue(ctx actor.Context, err error) {
	for _, q := range p.queue {
		p.reply(ctx, q, fmt.Errorf("pool %s: %w", p.spec.Name, err))
	}
	p.queue = nil
	p.recordQueue()
}

// reject counts a call refused without running.
func (p *pool) reject(reason string) {
	p.rejected[reason]++
	p.spec.Metrics.Rejections.Add(context.Background(), 1, p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelReason, reason)))
}

func (p *pool) recordQueue() {
	p.spec.Metrics.QueueDepth.Record(context.Background(), int64(len(p.queue)), p.attrs)
}
