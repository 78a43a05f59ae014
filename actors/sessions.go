package actors

import (
	"container/list"
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Sessions with a life cycle (SessionSpec): a pool forgets a session idle longer than its
// idle timeout, and the least recently used one when a new session would pass its maximum;
// the worker holding it drops its state. Sessions pinned to an upgrade's old code, and
// those with a call running, are left alone.

// SessionSpec bounds a pool's sessions; zero fields mean no bound.
type SessionSpec struct {
	IdleTimeout time.Duration
	Max         int
}

// sessionsExpire: time to close the sessions idle past the timeout.
type sessionsExpire struct{}

// recency orders a pool's sessions by last use, least recent first.
type recency struct {
	order *list.List               // of *used
	at    map[string]*list.Element // by session id
}

type used struct {
	id   string
	when time.Time
}

func newRecency() *recency { return &recency{order: list.New(), at: map[string]*list.Element{}} }

// touch marks id used now.
func (r *recency) touch(id string, now time.Time) {
	if e, ok := r.at[id]; ok {
		e.Value.(*used).when = now
		r.order.MoveToBack(e)
		return
	}
	r.at[id] = r.order.PushBack(&used{id: id, when: now})
}

func (r *recency) forget(id string) {
	if e, ok := r.at[id]; ok {
		r.order.Remove(e)
		delete(r.at, id)
	}
}

// evict closes session id in the worker that holds it and forgets it.
func (p *pool) evict(id, why string) {
	s := p.sessions[id]
	p.forgetSession(id)
	if s == nil {
		return
	}
	proc := s.proc
	if proc == nil {
		return // its worker is down: its state went with it
	}
	proc.closed(id)
	p.log.Debug().Str("session_id", id).Str("why", why).Msg("session closed")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = proc.Client().CloseSession(ctx, id) // a worker gone meanwhile dropped it anyway
	}()
}

// evictable says whether a session may be closed by the pool now.
func (p *pool) evictable(id string) bool {
	s := p.sessions[id]
	return s == nil || (s.sessionCalls[id] == 0 && !s.onOld(id) && !p.held(id))
}

// makeRoom closes the least recently used sessions while a new one would pass the maximum.
func (p *pool) makeRoom() {
	max := p.spec.Sessions.Max
	if max <= 0 {
		return
	}
	for e := p.recent.order.Front(); e != nil && len(p.sessions) >= max; {
		next := e.Next()
		if id := e.Value.(*used).id; p.evictable(id) {
			p.evict(id, "max")
		}
		e = next
	}
}

// expireSessions closes the sessions idle longer than the timeout.
func (p *pool) expireSessions(_ actor.Context) {
	ttl := p.spec.Sessions.IdleTimeout
	if ttl <= 0 {
		return
	}
	cutoff := time.Now().Add(-ttl)
	for e := p.recent.order.Front(); e != nil; {
		next := e.Next()
		u := e.Value.(*used)
		if u.when.After(cutoff) {
			break
		}
		if p.evictable(u.id) {
			p.evict(u.id, "idle")
		}
		e = next
	}
	p.recordSessions()
}

// startExpiring starts the ticker of the sessions' idle timeout (a tenth of it, between
// 50 ms and 1 s), until the pool stops.
func (p *pool) startExpiring(ctx actor.Context) {
	p.recent = newRecency()
	ttl := p.spec.Sessions.IdleTimeout
	if ttl <= 0 {
		return
	}
	p.every(ctx, min(max(ttl/10, 50*time.Millisecond), time.Second), func(_ context.Context, send func(any)) {
		send(&sessionsExpire{})
	})
}

// bound binds a new session to s, making room first.
func (p *pool) bound(session string, s *slot) {
	p.makeRoom()
	p.sessions[session] = s
	p.recent.touch(session, time.Now())
	p.recordSessions()
}

// forgetSession forgets a session the pool no longer holds.
func (p *pool) forgetSession(id string) {
	delete(p.sessions, id)
	p.recent.forget(id)
}

func (p *pool) recordSessions() {
	p.spec.Metrics.Sessions.Record(context.Background(), int64(len(p.sessions)), p.attrs)
}
