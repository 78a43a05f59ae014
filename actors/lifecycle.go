package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"

	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/supervision"
)

func (p *pool) ready(ctx actor.Context, msg *workerReady) {
	s := p.byID[msg.slot]
	if s == nil || s.removed {
		return
	}
	s.inc, s.proc, s.started, s.calls, s.inFlight, s.loading = msg.inc, msg.proc, msg.started, 0, 0, 0
	s.counters.pid.Store(int64(msg.proc.PID()))
	code := msg.proc.CodeVersion()
	s.counters.code.Store(&code)
	p.recordWorkers()
	if s.restart != nil {
		s.restart.SetAttributes(attribute.Int("process.pid", msg.proc.PID()))
		s.restart.End()
		s.restart = nil
	}
	if s.pid == nil {
		s.pid = ctx.Sender()
	}
	if p.state == StateStarting && p.readyCount() >= p.spec.Workers {
		p.state = StateRunning
		p.log.Info().Int("workers", p.spec.Workers).Msg("pool ready")
		p.readyOnce.Do(func() {
			if p.spec.OnReady != nil {
				p.spec.OnReady(nil)
			}
		})
	}
	p.dispatch(ctx)
}

func (p *pool) readyCount() int {
	n := 0
	for _, s := range p.slots {
		if s.inc != 0 && !s.removed {
			n++
		}
	}
	return n
}

// down marks a slot as not serving; its sessions are gone with its process.
func (p *pool) down(s *slot) {
	s.inc, s.proc, s.inFlight, s.loading = 0, nil, 0, 0
	s.sessionCalls = nil
	p.unpin(s)
	s.counters.pid.Store(0)
	s.counters.code.Store(nil)
	defer p.recordWorkers()
	for id, owner := range p.sessions {
		if owner == s {
			p.forgetSession(id)
		}
	}
	p.recordSessions()
}

func (p *pool) finished(ctx actor.Context, msg *callFinished) {
	p.completed++
	p.canaryCall(msg)
	if s := p.byID[msg.slot]; s != nil && s.old != nil && msg.inc == s.oldInc && s.oldInFlight > 0 {
		s.oldInFlight--
	}
	if msg.session != "" && p.sessions[msg.session] != nil {
		p.recent.touch(msg.session, time.Now()) // idle from the end of its last call
	}
	if s := p.byID[msg.slot]; s != nil && msg.session != "" && s.sessionCalls[msg.session] > 0 {
		if s.sessionCalls[msg.session]--; s.sessionCalls[msg.session] == 0 {
			delete(s.sessionCalls, msg.session)
		}
		p.swapWhenQuiet(ctx, s)
		p.movePinnedWhenQuiet(ctx, s)
	}
	if s := p.byID[msg.slot]; s != nil && s.inc == msg.inc {
		s.inFlight--
		s.calls++
		s.total++
		if p.recycleDue(s) && s.inFlight == 0 {
			p.recycle(ctx, s, "max_calls")
		}
	}
	p.dispatch(ctx)
	p.drained(ctx)
}

// drained answers the pool's drainers once nothing is in flight any more.
func (p *pool) drained(ctx actor.Context) {
	if p.state == StateDraining && len(p.drainers) > 0 && p.inFlight() == 0 {
		p.answerDrainers(ctx)
	}
}

// gaveUp says why the workers' supervisor gave up in the pool's terms (its restart
// settings), not the supervisor's actor path; the cause still matches with errors.Is.
func (p *pool) gaveUp(reason any) any {
	var esc *supervision.EscalationError
	err, _ := reason.(error)
	if !errors.As(err, &esc) || !errors.Is(esc.Err, supervision.ErrIntensityExceeded) {
		return reason
	}
	return fmt.Errorf("its workers failed more than %d times within %v (the pool's restart.max_restarts and restart.within): %w",
		p.spec.MaxRestarts, p.spec.Within, supervision.ErrIntensityExceeded)
}

func (p *pool) fail(ctx actor.Context, reason any) {
	err, _ := reason.(error)
	if err == nil {
		err = fmt.Errorf("%v", reason)
	}
	if p.lastFailure != nil && !errors.Is(err, p.lastFailure) { // said once
		err = fmt.Errorf("%w; last worker failure: %w", err, p.lastFailure)
	}
	p.state, p.err = StateFailed, err
	p.abandonUpgrade(ctx)
	p.spec.Metrics.SupervisorEscalated.Add(context.Background(), 1, p.attrs)
	p.log.Error().Err(err).Msg("pool failed: its workers kept failing")
	for _, q := range p.queue {
		p.reply(ctx, q, fmt.Errorf("pool %s: %w: %w", p.spec.Name, ErrPoolFailed, err))
	}
	p.queue = nil
	for _, s := range p.slots {
		p.down(s)
	}
	p.readyOnce.Do(func() {
		if p.spec.OnReady != nil {
			p.spec.OnReady(fmt.Errorf("pool %s: %w: %w", p.spec.Name, ErrPoolFailed, err))
		}
	})
}

func (p *pool) inFlight() int {
	n := 0
	for _, s := range p.slots {
		n += s.inFlight
	}
	return n
}

// drain stops taking calls, fails the queued ones and answers once nothing is in
// flight or the deadline passed.
func (p *pool) drain(ctx actor.Context, msg *messages.Drain) {
	p.abandonUpgrade(ctx)
	if p.state != StateFailed {
		p.state = StateDraining
	}
	p.failQueue(ctx, ErrStopped)
	p.drainers = append(p.drainers, ctx.Sender())
	if p.inFlight() == 0 {
		p.answerDrainers(ctx)
		return
	}
	system, self := ctx.ActorSystem(), ctx.Self()
	stopTimer(p.drainTimer)
	p.drainTimer = time.AfterFunc(time.Until(msg.Deadline), func() { system.Root.Send(self, &drainExpired{}) })
}

func (p *pool) answerDrainers(ctx actor.Context) {
	for _, d := range p.drainers {
		ctx.Send(d, &messages.Ack{})
	}
	p.drainers = nil
}

// shutdown stops the workers in reverse start order (the supervisor's ordered stop),
// then the pool itself.
func (p *pool) shutdown(ctx actor.Context) {
	p.abandonUpgrade(ctx)
	p.state = StateDraining
	p.failQueue(ctx, ErrStopped)
	if p.workers == nil || p.workersGone {
		ctx.Poison(ctx.Self())
		return
	}
	// The supervisor stops its workers in reverse start order, each within its
	// shutdown, then itself; the pool hears of it as *actor.Terminated (workersStopped)
	// and then stops, after the calls already in its mailbox (answered ErrStopped).
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = p.workers.Stop(sctx) // an attached handle only asks; it does not wait
	system, self := ctx.ActorSystem(), ctx.Self()
	timeout := time.Duration(len(p.slots)+1) * (p.spec.StopTimeout + 3*time.Second)
	stopTimer(p.shutdownTimer)
	p.shutdownTimer = time.AfterFunc(timeout, func() { system.Root.Send(self, &shutdownExpired{}) })
}

// workersStopped: the workers' supervisor has terminated (ordered stop, or failure).
func (p *pool) workersStopped(ctx actor.Context) {
	p.workersGone = true
	if p.state == StateDraining {
		ctx.Poison(ctx.Self())
	}
}

// resize adds slots after the existing ones, or removes the last ones.
func (p *pool) resize(ctx actor.Context, n int) {
	if n < 1 {
		ctx.Respond(&messages.Ack{Err: fmt.Errorf("resize pool %s: need at least 1 worker, got %d", p.spec.Name, n)})
		return
	}
	if p.workers == nil || p.state == StateFailed || p.state == StateDraining {
		ctx.Respond(&messages.Ack{Err: fmt.Errorf("resize pool %s: %w", p.spec.Name, ErrStopped)})
		return
	}
	if p.resizing {
		ctx.Respond(&messages.Ack{Err: fmt.Errorf("resize pool %s: another resize is under way; try again when it returns", p.spec.Name)})
		return
	}
	if p.upgrade != nil {
		ctx.Respond(&messages.Ack{Err: fmt.Errorf("resize pool %s: %w; resize when Reload returns", p.spec.Name, ErrUpgrading)})
		return
	}
	p.resizing = true
	var live []*slot
	for _, s := range p.slots {
		if !s.removed {
			live = append(live, s)
		}
	}
	var add []supervision.Child
	var remove []*slot
	switch {
	case n > len(live):
		for i := 0; len(add) < n-len(live); i++ {
			if _, taken := p.byID[p.slotID(i)]; taken {
				continue
			}
			c, err := p.child(ctx, i, n)
			if err != nil {
				p.forget(slices.Clone(p.slots[len(p.slots)-len(add):])) // the slots made for this resize
				p.resizing = false
				ctx.Respond(&messages.Ack{Err: fmt.Errorf("resize pool %s: %w", p.spec.Name, err)})
				return
			}
			add = append(add, c)
		}
	case n < len(live):
		remove = live[n:]
		for _, s := range remove {
			s.removed = true
			p.down(s)
		}
	}
	p.spec.Workers = n
	system, self, sender, workers := ctx.ActorSystem(), ctx.Self(), ctx.Sender(), p.workers
	rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	p.cancelResize = cancel
	go func() {
		ctx := rctx
		defer cancel()
		var errs []error
		for _, c := range add {
			if _, err := workers.StartChild(ctx, c); err != nil {
				errs = append(errs, err)
			}
		}
		for i := len(remove) - 1; i >= 0; i-- {
			if err := workers.TerminateChild(ctx, remove[i].id); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := workers.DeleteChild(ctx, remove[i].id); err != nil {
				errs = append(errs, err)
			}
		}
		system.Root.Send(self, &resized{sender: sender, removed: remove, err: errors.Join(errs...)})
	}()
}

// forget drops removed slots, so their ids can be used again.
func (p *pool) forget(removed []*slot) {
	for _, r := range removed {
		delete(p.byID, r.id)
		p.countersMu.Lock()
		delete(p.counters, r.id)
		p.countersMu.Unlock()
		for i, s := range p.slots {
			if s == r {
				p.slots = append(p.slots[:i], p.slots[i+1:]...)
				break
			}
		}
	}
}
