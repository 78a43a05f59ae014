package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
)

// Sessions pinned to their old code (UpgradeSpec.SessionDeadline): when a slot swaps to new
// code, its sessions stay on its old process, which keeps serving just them, until they end
// (CloseSession) or the deadline passes; then they move, their state through @on_upgrade,
// and the old process goes once none is left.

type (
	// sessionDeadline: the slot's pinned sessions must move now.
	sessionDeadline struct {
		slot string
		old  *live
	}
	// moveParked asks a worker to move sessions from its parked process to its serving one.
	moveParked struct{ sessions []string }
	// parkedMoved tells the pool the pinned sessions moved (or why not).
	parkedMoved struct {
		slot     string
		sessions []string
		err      error
	}
	// CloseSession asks a pool to end a session: its state is dropped from the worker
	// holding it, and its id is free again; the reply is a *messages.Ack.
	CloseSession struct{ ID string }
	// sessionClosed: the worker dropped an ended session's state.
	sessionClosed struct {
		slot, id string
		sender   *actor.PID
		err      error
	}
)

// pin keeps the slot's sessions on its old process after its swap, for the deadline.
func (p *pool) pin(ctx actor.Context, s *slot, old *live, oldInc uint64, ids []string) {
	if len(ids) == 0 {
		return
	}
	// The calls running on the old process count against it from now (pin runs before the
	// swap's ready resets the slot's count).
	s.old, s.oldInc, s.oldInFlight = old, oldInc, s.inFlight
	if s.deadline != nil {
		s.deadline.Stop()
	}
	s.pinned = map[string]bool{}
	for _, id := range ids {
		s.pinned[id] = true
	}
	system, self, d := ctx.ActorSystem(), ctx.Self(), p.spec.Upgrade.SessionDeadline
	s.deadline = time.AfterFunc(d, func() { system.Root.Send(self, &sessionDeadline{slot: s.id, old: old}) })
	p.log.Info().Str("worker", s.id).Int("sessions", len(ids)).Dur("session_deadline", d).
		Msg("the slot's sessions stay on the old code until they end or the deadline")
}

// quiet returns the sessions, and whether none of their calls runs on the slot.
func (s *slot) quiet(sessions map[string]bool) ([]string, bool) {
	ids := make([]string, 0, len(sessions))
	for id := range sessions {
		if s.sessionCalls[id] > 0 {
			return nil, false
		}
		ids = append(ids, id)
	}
	return ids, true
}

// onOld says whether a call of session goes to its slot's old process.
func (s *slot) onOld(session string) bool {
	return session != "" && s.old != nil && s.pinned[session]
}

// oldAvailable: the old process of a slot serves its pinned sessions and has room.
func (p *pool) oldAvailable(s *slot) bool {
	return s.old != nil && !s.old.gone() && s.oldInFlight < p.spec.MaxConcurrent
}

// deadlinePassed holds the pinned sessions' calls and moves them once none runs.
func (p *pool) deadlinePassed(ctx actor.Context, msg *sessionDeadline) {
	s := p.byID[msg.slot]
	if s == nil || s.old != msg.old || len(s.pinned) == 0 {
		return
	}
	s.movingPinned = true
	p.movePinnedWhenQuiet(ctx, s)
}

func (p *pool) movePinnedWhenQuiet(ctx actor.Context, s *slot) {
	if !s.movingPinned || s.moveAsked {
		return
	}
	ids, quiet := s.quiet(s.pinned)
	if !quiet {
		return
	}
	s.moveAsked = true
	ctx.Send(s.pid, &moveParked{sessions: ids})
}

// pinnedMoved: the sessions are on the new code; the old process goes once the upgrade is
// over and no pinned session is left.
func (p *pool) pinnedMoved(ctx actor.Context, msg *parkedMoved) {
	s := p.byID[msg.slot]
	if s == nil || s.old == nil {
		return
	}
	s.movingPinned, s.moveAsked = false, false
	if msg.err != nil {
		// They stay on the old code: nothing is lost; CloseSession or Stop ends them.
		p.log.Error().Err(msg.err).Str("worker", s.id).Msg("the sessions could not move to the new code; they stay on the old one")
		p.dispatch(ctx)
		return
	}
	for _, id := range msg.sessions {
		delete(s.pinned, id)
	}
	p.log.Info().Str("worker", s.id).Int("sessions", len(msg.sessions)).Msg("sessions moved to the new code")
	p.releaseOld(ctx, s)
	p.dispatch(ctx)
}

// releaseOld lets the slot's old process go once no session is pinned to it and no
// upgrade may roll back to it.
func (p *pool) releaseOld(ctx actor.Context, s *slot) {
	if s.old == nil || len(s.pinned) > 0 || p.upgrade != nil {
		return
	}
	p.unpin(s)
	ctx.Send(s.pid, &finishUpgrade{})
}

// unpin forgets the slot's old process (its sessions moved, ended, or it serves again).
func (p *pool) unpin(s *slot) {
	if s.deadline != nil {
		s.deadline.Stop()
	}
	s.old, s.oldInc, s.oldInFlight, s.pinned, s.deadline, s.movingPinned, s.moveAsked = nil, 0, 0, nil, nil, false, false
}

// closeSession drops a session from the worker that holds its state.
func (p *pool) closeSession(ctx actor.Context, msg *CloseSession) {
	s, ok := p.sessions[msg.ID]
	if !ok {
		ctx.Respond(&messages.Ack{Err: fmt.Errorf("close session %s: %w", msg.ID, bridge.ErrUnknownSession)})
		return
	}
	proc := s.proc
	if s.onOld(msg.ID) {
		proc = s.old
	}
	p.forgetSession(msg.ID)
	p.recordSessions()
	delete(s.pinned, msg.ID) // not moved any more, nor routed to the old code
	if u := p.upgrade; u != nil {
		for _, su := range u.active {
			delete(su.moving, msg.ID)
		}
	}
	if proc == nil {
		ctx.Respond(&messages.Ack{}) // its worker is gone, and its state with it
		return
	}
	system, self, sender, id := ctx.ActorSystem(), ctx.Self(), ctx.Sender(), msg.ID
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := proc.Client().CloseSession(cctx, id)
		proc.closed(id)
		system.Root.Send(self, &sessionClosed{slot: s.id, id: id, sender: sender, err: err})
	}()
}

func (p *pool) sessionClose(ctx actor.Context, msg *sessionClosed) {
	if s := p.byID[msg.slot]; s != nil {
		p.releaseOld(ctx, s)
	}
	var err error
	if msg.err != nil {
		err = fmt.Errorf("close session %s: %w", msg.id, msg.err)
	}
	ctx.Send(msg.sender, &messages.Ack{Err: err})
}
