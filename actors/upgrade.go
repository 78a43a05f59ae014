package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
)

// Upgrade asks a pool to roll new tool code through its workers, one slot at a time (see
// docs/upgrades.md); the reply is a *messages.Ack once every worker runs the new code, or
// with why the upgrade was rolled back. Version labels the new code ("": its hash).
// Bridge, when not nil, replaces the options the pool's processes start with (a new tools
// folder, interpreter or environment), for the new processes and every later one.
type Upgrade struct {
	Version string
	Bridge  []bridge.Option
}

// upgrade is a Reload under way: the pool's serving slots, upgraded one at a time. A slot
// serves from its new process as soon as that one is ready; its old process stays parked
// until every slot is upgraded (finishUpgrade: it drains and stops) or one fails
// (rollbackUpgrade: the upgraded slots serve from their old processes again). So the pool
// never has fewer ready workers than it had, and a rejected version takes no call.
type upgrade struct {
	sender *actor.PID // the Reload's, answered with an *messages.Ack
	label  string
	bridge []bridge.Option // nil: as the slots start now
	order  []*slot
	next   int     // the slot upgrading now: order[next]
	done   []*slot // upgraded, their old processes parked
	began  time.Time
	// The canary: the first upgraded slot's incarnation, and its calls while it serves
	// alone on the new code.
	canary          *slot
	canaryInc       uint64
	calls, failures int
	canaryTimer     *time.Timer
	// moving are the sessions of the slot about to swap: their calls wait until their
	// state is in the new process; swapping once the slot was told to swap.
	moving   map[string]bool
	swapping bool
	// pin are the sessions of the slot about to swap that stay on its old process
	// (UpgradeSpec.SessionDeadline).
	pin []string
	// saved is what each slot reached (upgraded, upgrading or skipped) started with
	// before, restored by a rollback.
	saved map[*slot]slotStart
}

// slotStart is what a slot's processes start with: its code label and options.
type slotStart struct {
	label  string
	bridge *[]bridge.Option
}

// canaryOver: the canary window ended.
type canaryOver struct{ u *upgrade }

func (u *upgrade) stopCanary() {
	if u.canaryTimer != nil {
		u.canaryTimer.Stop()
		u.canaryTimer = nil
	}
}

func (u *upgrade) current() *slot {
	if u.next < len(u.order) {
		return u.order[u.next]
	}
	return nil
}

// reload starts an upgrade, or refuses one the pool cannot take now.
func (p *pool) reload(ctx actor.Context, msg *Upgrade) {
	refuse := func(err error) {
		ctx.Respond(&messages.Ack{Err: fmt.Errorf("reload pool %s: %w", p.spec.Name, err)})
	}
	switch {
	case p.workers == nil || p.state == StateFailed || p.state == StateDraining:
		refuse(ErrStopped)
		return
	case p.state == StateStarting:
		refuse(fmt.Errorf("%w: the pool is still starting", ErrUpgrading))
		return
	case p.upgrade != nil:
		refuse(fmt.Errorf("%w: it returns when every worker runs the new code, or with why not", ErrUpgrading))
		return
	case p.resizing:
		refuse(fmt.Errorf("%w: a resize is under way; reload when it returns", ErrUpgrading))
		return
	}
	u := &upgrade{sender: ctx.Sender(), label: msg.Version, bridge: msg.Bridge, began: time.Now(), saved: map[*slot]slotStart{}}
	for _, s := range p.slots {
		if !s.removed {
			u.order = append(u.order, s)
		}
	}
	p.upgrade = u
	p.log.Info().Str("version", orHash(msg.Version)).Int("workers", len(u.order)).Msg("upgrade started")
	p.upgradeNext(ctx)
}

// upgradeNext asks the next serving slot to upgrade, or finishes the upgrade. A slot that
// is down (restarting) is skipped: it comes back on the code on disk, the new one.
func (p *pool) upgradeNext(ctx actor.Context) {
	u := p.upgrade
	for s := u.current(); s != nil; s = u.current() {
		u.saved[s] = slotStart{label: s.counters.label(), bridge: s.counters.bridge.Load()}
		if !s.removed && s.inc != 0 && s.pid != nil {
			ctx.Send(s.pid, &upgradeWorker{label: u.label, bridge: u.bridge})
			return
		}
		// Down: it restarts with the new code on disk; and, for an Upgrade, with its
		// options and label.
		if !s.removed {
			s.counters.setLabel(u.label)
			if u.bridge != nil {
				s.counters.setBridge(u.bridge)
			}
		}
		u.next++
	}
	p.upgrade = nil
	for _, s := range u.done {
		if !s.removed && (s.old == nil || len(s.pinned) == 0) {
			p.unpin(s)
			ctx.Send(s.pid, &finishUpgrade{})
		} // else its old process serves its pinned sessions until they move (pinned.go)
	}
	if u.bridge != nil {
		p.bridge = u.bridge // what slots a Resize adds start with
	}
	p.label = u.label
	p.recycleDueNow(ctx)
	p.log.Info().Str("version", orHash(u.label)).Dur("took", time.Since(u.began)).Msg("upgrade done: every worker runs the new code")
	ctx.Send(u.sender, &messages.Ack{})
}

// swapReady: the slot's new process is loaded and warm. Its sessions' calls are held;
// once none runs, the worker moves their state and swaps.
func (p *pool) swapReady(ctx actor.Context, msg *swapReady) {
	u := p.upgrade
	s := p.byID[msg.slot]
	if u == nil || s == nil || u.current() != s {
		return
	}
	var ids []string
	for id, owner := range p.sessions {
		if owner == s {
			ids = append(ids, id)
		}
	}
	if p.spec.Upgrade.SessionDeadline > 0 { // they stay on the old process after the swap
		u.pin = ids
		ctx.Send(s.pid, &swapNow{})
		return
	}
	u.moving = map[string]bool{}
	for _, id := range ids {
		u.moving[id] = true
	}
	p.swapWhenQuiet(ctx)
}

// swapWhenQuiet tells the upgrading slot to swap once no call of its sessions runs.
func (p *pool) swapWhenQuiet(ctx actor.Context) {
	u := p.upgrade
	if u == nil || u.moving == nil || u.swapping {
		return
	}
	s := u.current()
	ids := make([]string, 0, len(u.moving))
	for id := range u.moving {
		if s.sessionCalls[id] > 0 {
			return
		}
		ids = append(ids, id)
	}
	u.swapping = true
	ctx.Send(s.pid, &swapNow{sessions: ids})
}

// upgraded: a slot serves from its new process.
func (p *pool) upgraded(ctx actor.Context, msg *workerUpgraded) {
	if u := p.upgrade; u != nil {
		u.moving, u.swapping = nil, false // the held calls go on, to the new process
		if s := p.byID[msg.ready.slot]; s != nil && s == u.current() && s.proc != nil {
			p.pin(ctx, s, s.proc, s.inc, u.pin)
			u.pin = nil
		}
	}
	p.ready(ctx, &msg.ready)
	u := p.upgrade
	if u == nil {
		return
	}
	if s := u.current(); s != nil && s.id == msg.ready.slot {
		u.done = append(u.done, s)
		u.next++
		if w := p.spec.Upgrade.Canary; w > 0 && u.canary == nil {
			u.canary, u.canaryInc = s, msg.ready.inc
			system, self := ctx.ActorSystem(), ctx.Self()
			u.canaryTimer = time.AfterFunc(w, func() { system.Root.Send(self, &canaryOver{u: u}) })
			p.log.Info().Str("worker", s.id).Dur("canary", w).Msg("the new code serves on one worker: its calls decide")
			return
		}
		p.upgradeNext(ctx)
	}
}

// canaryCall counts a call the canary ran.
func (p *pool) canaryCall(msg *callFinished) {
	u := p.upgrade
	if u == nil || u.canary == nil || u.canaryTimer == nil || msg.slot != u.canary.id || msg.inc != u.canaryInc {
		return
	}
	u.calls++
	if msg.failed {
		u.failures++
	}
}

// canaryDone judges the canary: its share of failed calls against the pool's bound.
func (p *pool) canaryDone(ctx actor.Context, msg *canaryOver) {
	u := p.upgrade
	if u != msg.u {
		return // that upgrade ended already
	}
	u.canaryTimer = nil
	ratio := 0.0
	if u.calls > 0 {
		ratio = float64(u.failures) / float64(u.calls)
	}
	if ratio > p.spec.Upgrade.MaxFailureRatio {
		p.rollback(ctx, fmt.Errorf("the canary %s failed %d of %d calls on the new code in %v, over upgrade.max_failure_ratio %v",
			u.canary.id, u.failures, u.calls, p.spec.Upgrade.Canary, p.spec.Upgrade.MaxFailureRatio))
		return
	}
	p.log.Info().Str("worker", u.canary.id).Int("calls", u.calls).Int("failed", u.failures).Msg("the canary passed: the other workers follow")
	p.upgradeNext(ctx)
}

// upgradeFailedOn: a slot's new process failed to start or warm up.
func (p *pool) upgradeFailedOn(ctx actor.Context, msg *upgradeFailed) {
	if u := p.upgrade; u != nil {
		if s := u.current(); s != nil && s.id == msg.slot {
			p.rollback(ctx, fmt.Errorf("worker %s: %w", msg.slot, msg.err))
		}
	}
}

// upgradeCrashed: a worker failed while the upgrade ran: the new code may be what failed.
func (p *pool) upgradeCrashed(ctx actor.Context, id string, err error) {
	u := p.upgrade
	if u == nil {
		return
	}
	for _, s := range append(u.done, u.current()) {
		if s != nil && s.id == id {
			p.rollback(ctx, fmt.Errorf("worker %s failed during the upgrade (it restarts on the code on disk): %w", id, err))
			return
		}
	}
}

// rollback ends the upgrade: every upgraded slot serves from its old process again, and
// the Reload returns cause.
func (p *pool) rollback(ctx actor.Context, cause error) {
	u := p.upgrade
	p.upgrade = nil
	u.stopCanary()
	defer p.dispatch(ctx) // the held sessions' calls go on, on the old code
	defer p.recycleDueNow(ctx)
	for s, was := range u.saved {
		s.counters.setLabel(was.label)
		s.counters.bridge.Store(was.bridge)
		p.unpin(s) // its old process serves again, its sessions with it
	}
	for _, s := range append(u.done, u.current()) {
		if s != nil && !s.removed && s.pid != nil {
			ctx.Send(s.pid, &rollbackUpgrade{})
		}
	}
	p.log.Error().Err(cause).Str("version", orHash(u.label)).Msg("upgrade rolled back: the old code serves on")
	ctx.Send(u.sender, &messages.Ack{Err: fmt.Errorf("reload pool %s: %w: %w", p.spec.Name, ErrRolledBack, cause)})
}

// abandonUpgrade answers a Reload the pool will not finish (it stops).
func (p *pool) abandonUpgrade(ctx actor.Context) {
	if u := p.upgrade; u != nil {
		p.upgrade = nil
		u.stopCanary()
		ctx.Send(u.sender, &messages.Ack{Err: fmt.Errorf("reload pool %s: %w", p.spec.Name, ErrStopped)})
	}
}

// held says whether a session's calls wait for its move to the new code.
func (p *pool) held(session string) bool {
	if session == "" {
		return false
	}
	if p.upgrade != nil && p.upgrade.moving[session] {
		return true
	}
	s := p.sessions[session]
	return s != nil && s.movingPinned && s.pinned[session]
}

// moving says whether s is the slot whose sessions are moving: no new session binds to it
// until it has swapped.
func (p *pool) moving(s *slot) bool {
	u := p.upgrade
	return u != nil && u.moving != nil && u.current() == s
}
