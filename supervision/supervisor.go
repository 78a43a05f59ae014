package supervision

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

type phase int

const (
	phaseStarting phase = iota // starting the initial children
	phaseRunning
	phaseStopping // stopping children, then stopping or failing itself
	phaseDone     // gone (or being stopped/restarted by protoactor): ignore everything
)

type childState int

const (
	childStopped  childState = iota // no process
	childStarting                   // spawned or restarted, waiting for its ack
	childRunning
	childFailed // panicked: suspended, waiting for a decision
	childStopping
)

// child is the supervisor's record of one child spec.
type child struct {
	spec       Child
	props      *actor.Props
	pid        *actor.PID
	state      childState
	inc        int // incarnation, bumped at every start and restart
	skipAcks   int // acks still in flight from an incarnation that already failed
	restarting bool
	cause      string
	killed     bool
	stopReason error
	timer      Timer
	restarts   []time.Time // this child's restarts, for backoff attempts
}

type stepKind int

const (
	stepStart stepKind = iota // start or restart a child, wait for its ack
	stepStop                  // stop a child with its Shutdown, wait for Terminated
	stepDelay                 // wait for a backoff delay
	stepCall                  // run a function
)

// step is one sequential action of the supervisor; the next step runs only
// when this one has completed (acks, terminations and timers come back as
// messages, so the supervisor never blocks).
type step struct {
	kind   stepKind
	c      *child
	reason error
	kill   bool
	delay  time.Duration
	cause  string
	call   func()
	onOK   func(*actor.PID)
	onFail func(error)
}

// exit is a child exit waiting to be handled.
type exit struct {
	c        *child
	inc      int
	abnormal bool
}

type supervisor struct {
	spec   Spec
	cfg    config
	handle *Handle

	ctx    actor.Context
	sup    actor.Supervisor
	self   *actor.PID
	root   *actor.RootContext
	window window

	children []*child
	phase    phase
	plan     []step
	cur      *step
	token    int
	delay    Timer
	backlog  []any
	exitErr  error
}

func newSupervisor(spec Spec, cfg config, h *Handle) *supervisor {
	spec = spec.withDefaults()
	return &supervisor{spec: spec, cfg: cfg, handle: h,
		window: window{max: spec.MaxRestarts, within: spec.Within}}
}

var _ actor.SupervisorStrategy = (*supervisor)(nil)

// Receive implements actor.Actor.
func (s *supervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.init(ctx)
	case *childUp:
		s.onUp(m.pid)
	case *actor.Terminated:
		s.onTerminated(m.Who)
	case *stopTimeout:
		if s.cur != nil && s.cur.kind == stepStop && s.cur.c == m.c && m.c.inc == m.inc && m.c.pid != nil {
			s.kill(m.c)
		}
	case *delayDone:
		if s.cur != nil && s.cur.kind == stepDelay && m.token == s.token {
			s.cur, s.delay = nil, nil
			s.pump()
		}
	case *ShutdownRequest:
		s.enqueue(&stopReq{reason: m.Reason})
	case *stopReq:
		s.enqueue(m)
	case *whichChildrenReq:
		m.reply <- reply{out: s.which()}
	case *countChildrenReq:
		m.reply <- reply{out: s.count()}
	case *startChildReq, *terminateChildReq, *restartChildReq, *deleteChildReq:
		s.enqueue(m)
	case *actor.Stopping, *actor.Restarting:
		s.phase = phaseDone
		s.cancelTimers()
	case *actor.Stopped:
		s.cancelTimers()
		if s.handle != nil {
			s.handle.finish(s.exitErr)
		}
	}
}

func (s *supervisor) init(ctx actor.Context) {
	s.ctx, s.self, s.root = ctx, ctx.Self(), ctx.ActorSystem().Root
	s.sup, _ = ctx.(actor.Supervisor)
	s.phase = phaseStarting
	for _, cs := range s.spec.Children {
		s.children = append(s.children, s.newChild(cs))
	}
	for _, c := range s.children {
		s.plan = append(s.plan, step{kind: stepStart, c: c, onFail: s.startFailed(c)})
	}
	s.plan = append(s.plan, step{kind: stepCall, call: func() {
		s.phase = phaseRunning
		if s.handle != nil {
			s.handle.started(nil)
		}
		if p := s.ctx.Parent(); p != nil && s.cfg.ackParent {
			s.root.Send(p, &childUp{pid: s.self})
		}
	}})
	s.pump()
}

func (s *supervisor) newChild(cs Child) *child {
	producer := cs.Producer
	if cs.nested != nil {
		cfg := s.cfg
		cfg.name, cfg.ackParent = "", true
		for _, o := range cs.nested.opts {
			o(&cfg)
		}
		spec := cs.nested.spec
		producer = func() actor.Actor { return newSupervisor(spec, cfg, nil) }
	}
	opts := append(append([]actor.PropsOption(nil), cs.Options...),
		actor.WithReceiverMiddleware(childMiddleware(cs.TrapExit, cs.nested != nil)))
	return &child{spec: cs, props: actor.PropsFromProducer(producer, opts...)}
}

func (s *supervisor) startFailed(c *child) func(error) {
	return func(reason error) {
		s.fail(fmt.Errorf("start child %q: %w: %w", c.spec.ID, ErrStartFailed, reason))
	}
}

// pump runs steps until one has to wait, then handles queued exits and
// requests, one at a time, each of which may plan more steps.
func (s *supervisor) pump() {
	for s.cur == nil && s.phase != phaseDone {
		if len(s.plan) > 0 {
			st := s.plan[0]
			s.plan = s.plan[1:]
			if s.exec(&st) {
				s.cur = &st
			}
			continue
		}
		if len(s.backlog) == 0 || s.phase == phaseStarting {
			return
		}
		w := s.backlog[0]
		s.backlog = s.backlog[1:]
		s.handle1(w)
	}
}

func (s *supervisor) enqueue(w any) {
	s.backlog = append(s.backlog, w)
	s.pump()
}

// exec starts a step and reports whether it must be waited for.
func (s *supervisor) exec(st *step) bool {
	c := st.c
	switch st.kind {
	case stepCall:
		st.call()
		return false
	case stepDelay:
		s.token++
		tok, self, root := s.token, s.self, s.root
		s.delay = s.cfg.clock.AfterFunc(st.delay, func() { root.Send(self, &delayDone{token: tok}) })
		return true
	case stepStart:
		c.inc++
		c.restarting, c.cause = st.cause != "", st.cause
		if c.pid != nil && c.state != childStopped {
			// restart in place: same PID, same mailbox, a fresh actor value.
			c.state = childStarting
			s.sup.RestartChildren(c.pid)
			return true
		}
		pid, err := s.ctx.SpawnNamed(c.props, c.spec.ID)
		if err != nil {
			c.state = childStopped
			s.emit(&ChildFailed{EventHeader: s.header(), ID: c.spec.ID, Reason: err, Starting: true})
			if st.onFail != nil {
				st.onFail(err)
			}
			return false
		}
		c.pid, c.state = pid, childStarting
		return true
	case stepStop:
		if c.pid == nil {
			return false
		}
		c.killed, c.stopReason = false, st.reason
		graceful := !(st.kill || c.state == childFailed || c.state == childStarting || c.spec.Shutdown.Brutal())
		c.state = childStopping
		if !graceful {
			s.kill(c)
			return true
		}
		s.ctx.Send(c.pid, &ShutdownRequest{Reason: st.reason})
		if d, ok := c.spec.Shutdown.Deadline(); ok {
			inc, self, root := c.inc, s.self, s.root
			c.timer = s.cfg.clock.AfterFunc(d, func() { root.Send(self, &stopTimeout{c: c, inc: inc}) })
		}
		return true
	}
	return false
}

func (s *supervisor) kill(c *child) {
	c.killed = true
	s.ctx.Stop(c.pid)
}

func (s *supervisor) onUp(pid *actor.PID) {
	c := s.byPID(pid)
	if c == nil {
		return
	}
	if c.skipAcks > 0 {
		c.skipAcks--
		return
	}
	if c.state != childStarting {
		return
	}
	c.state = childRunning
	if c.restarting {
		s.emit(&ChildRestarted{EventHeader: s.header(), ID: c.spec.ID, PID: pid, Cause: c.cause})
	} else {
		s.emit(&ChildStarted{EventHeader: s.header(), ID: c.spec.ID, PID: pid})
	}
	c.restarting = false
	if st := s.cur; st != nil && st.kind == stepStart && st.c == c {
		s.cur = nil
		if st.onOK != nil {
			st.onOK(pid)
		}
		s.pump()
	}
}

func (s *supervisor) onTerminated(pid *actor.PID) {
	c := s.byPID(pid)
	if c == nil || s.phase == phaseDone {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.pid, c.skipAcks = nil, 0
	prev := c.state
	c.state = childStopped
	if st := s.cur; st != nil && st.c == c {
		s.cur = nil
		switch st.kind {
		case stepStop:
			s.emit(&ChildStopped{EventHeader: s.header(), ID: c.spec.ID, PID: pid, Reason: c.stopReason, Killed: c.killed})
			s.pump()
			return
		case stepStart:
			if st.onFail != nil {
				s.emit(&ChildExited{EventHeader: s.header(), ID: c.spec.ID, PID: pid})
				st.onFail(fmt.Errorf("%w while starting", ErrStopped))
				s.pump()
				return
			}
		}
	}
	if prev == childFailed {
		return // a failure already queued covers it
	}
	s.emit(&ChildExited{EventHeader: s.header(), ID: c.spec.ID, PID: pid})
	s.enqueue(exit{c: c, inc: c.inc, abnormal: false})
}

// HandleFailure implements actor.SupervisorStrategy: protoactor calls it, on
// the supervisor's goroutine, when a child panics (its mailbox is suspended).
func (s *supervisor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, pid *actor.PID, _ *actor.RestartStatistics, reason any, message any) {
	c := s.byPID(pid)
	if c == nil || s.phase == phaseDone {
		sup.StopChildren(pid)
		return
	}
	value, stack := unwrapPanic(reason)
	_, starting := message.(*actor.Started)
	if c.spec.nested != nil && c.state == childStarting {
		starting = true // a nested supervisor acks only when its children are up
	}
	s.emit(&ChildFailed{EventHeader: s.header(), ID: c.spec.ID, PID: pid, Reason: value,
		Stack: stack, Message: message, Starting: starting})
	if c.state == childStarting && !starting {
		c.skipAcks++ // it started (the ack is still in flight), then failed
		c.restarting = false
	}
	prev := c.state
	c.state = childFailed
	if st := s.cur; st != nil && st.c == c {
		switch {
		case st.kind == stepStart && st.onFail != nil:
			s.cur = nil
			st.onFail(reasonError(value))
			s.pump()
			return
		case st.kind == stepStart:
			s.cur = nil // a restart that failed: handled as one more exit below
		case st.kind == stepStop:
			s.kill(c) // it panicked while stopping
			return
		}
	}
	if prev == childStopping {
		return
	}
	s.enqueue(exit{c: c, inc: c.inc, abnormal: true})
}

// handle1 handles one queued exit or request.
func (s *supervisor) handle1(w any) {
	if s.phase != phaseRunning {
		if r := replyOf(w); r != nil {
			r <- reply{err: ErrStopped}
		}
		return
	}
	switch m := w.(type) {
	case exit:
		s.onExit(m)
	case *stopReq:
		s.phase = phaseStopping
		s.planStopAll(m.reason)
		s.plan = append(s.plan, step{kind: stepCall, call: func() {
			s.emit(&SupervisorStopped{EventHeader: s.header()})
			s.phase = phaseDone
			s.ctx.Stop(s.self)
		}})
	case *startChildReq:
		s.startChild(m)
	case *terminateChildReq:
		c := s.byID(m.id)
		if c == nil {
			m.reply <- reply{err: fmt.Errorf("terminate child %q: %w", m.id, ErrChildNotFound)}
			return
		}
		s.plan = append(s.plan, step{kind: stepStop, c: c, reason: ErrShutdown}, step{kind: stepCall, call: func() {
			if c.spec.Restart == Temporary {
				s.remove(c)
			}
			m.reply <- reply{}
		}})
	case *restartChildReq:
		c := s.byID(m.id)
		switch {
		case c == nil:
			m.reply <- reply{err: fmt.Errorf("restart child %q: %w", m.id, ErrChildNotFound)}
		case c.state != childStopped:
			m.reply <- reply{err: fmt.Errorf("restart child %q: %w", m.id, ErrChildRunning)}
		default:
			s.plan = append(s.plan, step{kind: stepStart, c: c,
				onOK: func(pid *actor.PID) { m.reply <- reply{pid: pid} },
				onFail: func(err error) {
					s.plan = append([]step{{kind: stepStop, c: c, kill: true, reason: err}, {kind: stepCall, call: func() {
						m.reply <- reply{err: fmt.Errorf("restart child %q: %w: %w", m.id, ErrStartFailed, err)}
					}}}, s.plan...)
				}})
		}
	case *deleteChildReq:
		c := s.byID(m.id)
		switch {
		case c == nil:
			m.reply <- reply{err: fmt.Errorf("delete child %q: %w", m.id, ErrChildNotFound)}
		case c.state != childStopped:
			m.reply <- reply{err: fmt.Errorf("delete child %q: %w", m.id, ErrChildRunning)}
		default:
			s.remove(c)
			m.reply <- reply{}
		}
	}
}

func replyOf(w any) chan reply {
	switch m := w.(type) {
	case *startChildReq:
		return m.reply
	case *terminateChildReq:
		return m.reply
	case *restartChildReq:
		return m.reply
	case *deleteChildReq:
		return m.reply
	}
	return nil
}

func (s *supervisor) startChild(m *startChildReq) {
	if err := m.spec.Validate(); err != nil {
		m.reply <- reply{err: fmt.Errorf("start child: %w", err)}
		return
	}
	if s.byID(m.spec.ID) != nil {
		m.reply <- reply{err: fmt.Errorf("start child %q: %w", m.spec.ID, ErrChildExists)}
		return
	}
	c := s.newChild(m.spec)
	s.children = append(s.children, c)
	s.plan = append(s.plan, step{kind: stepStart, c: c,
		onOK: func(pid *actor.PID) { m.reply <- reply{pid: pid} },
		onFail: func(err error) {
			s.plan = append([]step{{kind: stepStop, c: c, kill: true, reason: err}, {kind: stepCall, call: func() {
				s.remove(c)
				m.reply <- reply{err: fmt.Errorf("start child %q: %w: %w", m.spec.ID, ErrStartFailed, err)}
			}}}, s.plan...)
		}})
}

// onExit applies the restart type, the intensity and the strategy to an exit.
func (s *supervisor) onExit(e exit) {
	c := e.c
	if c.inc != e.inc || s.byID(c.spec.ID) != c {
		return // stale: the child was restarted or deleted since
	}
	if !c.spec.Restart.restarts(e.abnormal) {
		if c.state == childFailed {
			s.plan = append(s.plan, step{kind: stepStop, c: c, kill: true, reason: errors.New("exited")})
		}
		if c.spec.Restart == Temporary {
			s.plan = append(s.plan, step{kind: stepCall, call: func() { s.remove(c) }})
		}
		return
	}
	now := s.cfg.clock.Now()
	if s.window.add(now) {
		s.emit(&IntensityExceeded{EventHeader: s.header(), ID: c.spec.ID, Restarts: len(s.window.times),
			MaxRestarts: s.window.max, Within: s.window.within})
		s.fail(fmt.Errorf("child %q: %w (%d in %v)", c.spec.ID, ErrIntensityExceeded, s.spec.MaxRestarts, s.spec.Within))
		return
	}
	if b := s.spec.Backoff; b != nil {
		attempt := 0
		for _, t := range c.restarts {
			if now.Sub(t) < s.spec.Within {
				attempt++
			}
		}
		d := b.Delay(attempt)
		s.emit(&RestartDelayed{EventHeader: s.header(), ID: c.spec.ID, Attempt: attempt, Delay: d})
		s.plan = append(s.plan, step{kind: stepDelay, delay: d})
	}
	keep := c.restarts[:0]
	for _, t := range c.restarts {
		if now.Sub(t) < s.spec.Within {
			keep = append(keep, t)
		}
	}
	c.restarts = append(keep, now)
	for _, a := range s.affected(c) {
		s.plan = append(s.plan, step{kind: stepStart, c: a, cause: c.spec.ID})
	}
}

// affected returns, in start order, the children to restart when c exits.
func (s *supervisor) affected(c *child) []*child {
	if s.spec.Strategy == OneForOne {
		return []*child{c}
	}
	var out []*child
	after := false
	for _, o := range s.children {
		if o == c {
			after = true
			out = append(out, o)
			continue
		}
		if o.state != childRunning && o.state != childFailed {
			continue
		}
		if s.spec.Strategy == OneForAll || after {
			out = append(out, o)
		}
	}
	return out
}

// fail stops every child in reverse start order, then escalates err.
func (s *supervisor) fail(err error) {
	s.phase = phaseStopping
	s.plan = s.plan[:0]
	s.planStopAll(err)
	s.plan = append(s.plan, step{kind: stepCall, call: func() { s.escalate(err) }})
}

func (s *supervisor) planStopAll(reason error) {
	for i := len(s.children) - 1; i >= 0; i-- {
		if s.children[i].pid != nil {
			s.plan = append(s.plan, step{kind: stepStop, c: s.children[i], reason: reason})
		}
	}
}

func (s *supervisor) escalate(err error) {
	e := &EscalationError{Supervisor: s.self, Err: err}
	s.exitErr = e
	s.emit(&Escalated{EventHeader: s.header(), Reason: e})
	s.phase = phaseDone
	if s.handle != nil {
		s.handle.started(e)
	}
	if s.ctx.Parent() == nil {
		s.ctx.Stop(s.self)
		return
	}
	panic(e)
}

func (s *supervisor) cancelTimers() {
	if s.delay != nil {
		s.delay.Stop()
		s.delay = nil
	}
	for _, c := range s.children {
		if c.timer != nil {
			c.timer.Stop()
			c.timer = nil
		}
	}
}

func (s *supervisor) remove(c *child) {
	for i, o := range s.children {
		if o == c {
			s.children = append(s.children[:i:i], s.children[i+1:]...)
			return
		}
	}
}

func (s *supervisor) byPID(pid *actor.PID) *child {
	for _, c := range s.children {
		if c.pid != nil && c.pid.Equal(pid) {
			return c
		}
	}
	return nil
}

func (s *supervisor) byID(id string) *child {
	for _, c := range s.children {
		if c.spec.ID == id {
			return c
		}
	}
	return nil
}

func (s *supervisor) which() []ChildInfo {
	out := make([]ChildInfo, 0, len(s.children))
	for _, c := range s.children {
		var pid *actor.PID
		if c.state == childRunning || c.state == childStarting {
			pid = c.pid
		}
		out = append(out, ChildInfo{ID: c.spec.ID, PID: pid, Restart: c.spec.Restart, IsSupervisor: c.spec.IsSupervisor()})
	}
	return out
}

func (s *supervisor) count() Counts {
	var n Counts
	for _, c := range s.children {
		n.Specs++
		if c.state == childRunning {
			n.Active++
		}
		if c.spec.IsSupervisor() {
			n.Supervisors++
		} else {
			n.Workers++
		}
	}
	return n
}

func (s *supervisor) header() EventHeader {
	return EventHeader{Supervisor: s.self, Time: s.cfg.clock.Now()}
}

func (s *supervisor) emit(e Event) {
	if s.cfg.hook != nil {
		s.cfg.hook(e)
	}
}
