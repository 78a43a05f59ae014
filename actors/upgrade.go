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

// upgrade is a Reload under way: the pool's serving slots, upgraded UpgradeSpec.MaxSurge at
// a time. A slot serves from its new process as soon as that one is ready; its old process
// stays parked until every slot is upgraded (finishUpgrade: it drains and stops) or one
// fails (rollbackUpgrade: the upgraded slots serve from their old processes again). So the
// pool never has fewer ready workers than it had, and a rejected version takes no call.
type upgrade struct {
	sender *actor.PID // the Reload's, answered with an *messages.Ack
	seq    uint64     // numbers the pool's upgrades: a late answer to an earlier one is ignored
	label  string
	bridge []bridge.Option // nil: as the slots start now
	order  []*slot
	next   int                    // order[next:] have not started
	active map[*slot]*slotUpgrade // started, not swapped yet
	done   []*slot                // upgraded, their old processes parked
	began  time.Time
	// The canary: the first upgraded slot's incarnation, and its calls while it serves
	// alone on the new code.
	canary          *slot
	canaryInc       uint64
	calls, failures int
	canaryTimer     *time.Timer
	// saved is what each slot reached (upgraded, upgrading or skipped) started with
	// before, restored by a rollback.
	saved map[*slot]slotStart
}

// slotUpgrade is one slot's upgrade under way.
type slotUpgrade struct {
	// moving are the slot's sessions about to move: their calls wait until their state is
	// in the new process; swapping once the slot was told to swap.
	moving   map[string]bool
	swapping bool
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

// reached are the slots the upgrade has changed or is changing.
func (u *upgrade) reached() []*slot {
	out := append([]*slot(nil), u.done...)
	for s := range u.active {
		out = append(out, s)
	}
	return out
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
	for _, s := range p.slots {
		if s.old == nil {
			continue
		}
		if !s.old.gone() {
			refuse(fmt.Errorf("%w: sessions of the last upgrade still run on its old code on %s (upgrade.session_deadline): reload once they moved or closed", ErrUpgrading, s.id))
			return
		}
		p.unpin(s) // its old process died, its pinned sessions with it
		ctx.Send(s.pid, &finishUpgrade{})
	}
	p.upgrades++
	u := &upgrade{sender: ctx.Sender(), seq: p.upgrades, label: msg.Version, bridge: msg.Bridge, began: time.Now(),
		active: map[*slot]*slotUpgrade{}, saved: map[*slot]slotStart{}}
	for _, s := range p.slots {
		if !s.removed {
			u.order = append(u.order, s)
		}
	}
	p.upgrade = u
	p.log.Info().Str("version", orHash(msg.Version)).Int("workers", len(u.order)).Msg("upgrade started")
	p.upgradeNext(ctx)
}

// upgradeNext starts the next serving slots' upgrades, up to the surge (one alone while a
// canary is due or judged), or finishes the upgrade. A slot that is down (restarting) is
// skipped: it comes back on the code on disk, the new one.
func (p *pool) upgradeNext(ctx actor.Context) {
	u := p.upgrade
	surge := max(p.spec.Upgrade.MaxSurge, 1)
	if p.spec.Upgrade.Canary > 0 && (u.canary == nil || u.canaryTimer != nil) {
		surge = 1
	}
	for len(u.active) < surge && u.next < len(u.order) {
		s := u.order[u.next]
		u.next++
		u.saved[s] = slotStart{label: s.counters.label(), bridge: s.counters.bridge.Load()}
		if !s.removed && s.inc != 0 && s.pid != nil {
			u.active[s] = &slotUpgrade{}
			ctx.Send(s.pid, &upgradeWorker{seq: u.seq, label: u.label, bridge: u.bridge})
			continue
		}
		// Down: it restarts with the new code on disk; and, for an Upgrade, with its
		// options and label.
		if !s.removed {
			s.counters.setLabel(u.label)
			if u.bridge != nil {
				s.counters.setBridge(u.bridge)
			}
		}
	}
	if len(u.active) > 0 || u.canaryTimer != nil {
		return
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
	if u == nil || s == nil || u.active[s] == nil || msg.seq != u.seq {
		return
	}
	su := u.active[s]
	if p.spec.Upgrade.SessionDeadline > 0 { // they stay on the old process after the swap
		ctx.Send(s.pid, &swapNow{})
		return
	}
	ids := p.sessionsOf(s)
	su.moving = map[string]bool{}
	for _, id := range ids {
		su.moving[id] = true
	}
	p.swapWhenQuiet(ctx, s)
}

// swapWhenQuiet tells an upgrading slot to swap once no call of its sessions runs.
func (p *pool) swapWhenQuiet(ctx actor.Context, s *slot) {
	u := p.upgrade
	if u == nil || u.active[s] == nil {
		return
	}
	su := u.active[s]
	if su.moving == nil || su.swapping {
		return
	}
	ids, quiet := s.quiet(su.moving)
	if !quiet {
		return
	}
	su.swapping = true
	ctx.Send(s.pid, &swapNow{sessions: ids})
}

// upgraded: a slot serves from its new process.
func (p *pool) upgraded(ctx actor.Context, msg *workerUpgraded) {
	u, s := p.upgrade, p.byID[msg.ready.slot]
	if u == nil || s == nil || u.active[s] == nil || msg.seq != u.seq {
		// A swap that raced a rollback (or an earlier upgrade's): the worker serves its
		// old process again and says so in a workerReady of its own.
		return
	}
	delete(u.active, s) // the held calls go on, to the new process
	if s.proc != nil && p.spec.Upgrade.SessionDeadline > 0 {
		p.pin(ctx, s, s.proc, s.inc, p.sessionsOf(s)) // every session bound to it up to now
	}
	p.ready(ctx, &msg.ready)
	u.done = append(u.done, s)
	if w := p.spec.Upgrade.Canary; w > 0 && u.canary == nil {
		u.canary, u.canaryInc = s, msg.ready.inc
		system, self := ctx.ActorSystem(), ctx.Self()
		u.canaryTimer = time.AfterFunc(w, func() { system.Root.Send(self, &canaryOver{u: u}) })
		p.log.Info().Str("worker", s.id).Dur("canary", w).Msg("the new code serves on one worker: its calls decide")
		return
	}
	p.upgradeNext(ctx)
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
	if u := p.upgrade; u != nil && msg.seq == u.seq {
		if s := p.byID[msg.slot]; s != nil && u.active[s] != nil {
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
	for _, s := range u.reached() {
		if s.id == id {
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
	for s := range u.saved { // reached, and skipped ones that may have restarted on the new
		if !s.removed && s.pid != nil {
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
	if u := p.upgrade; u != nil {
		for _, su := range u.active {
			if su.moving[session] {
				return true
			}
		}
	}
	s := p.sessions[session]
	return s != nil && s.movingPinned && s.pinned[session]
}

// moving says whether s is the slot whose sessions are moving: no new session binds to it
// until it has swapped.
func (p *pool) moving(s *slot) bool {
	u := p.upgrade
	return u != nil && u.active[s] != nil && u.active[s].moving != nil
}

// sessionsOf are the sessions bound to s.
func (p *pool) sessionsOf(s *slot) []string {
	var ids []string
	for id, owner := range p.sessions {
		if owner == s {
			ids = append(ids, id)
		}
	}
	return ids
}
