package actors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/telemetry"
	"github.com/pyvisor/pyvisor/telemetry/otelactor"
)

// instrumentation names the actors' tracer.
const instrumentation = "github.com/pyvisor/pyvisor/actors"

// Pool states, as Stats reports them.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateDraining = "draining"
	StateFailed   = "failed"
)

// Messages the pool sends itself.
type (
	queueExpired struct{ id uint64 }
	recycleCheck struct{}
	drainExpired struct{}
	// workersFailed: the workers' supervisor gave up (restart intensity exceeded).
	workersFailed struct{ reason any }
	resized       struct {
		sender  *actor.PID
		removed []*slot // terminated and deleted: their ids are free again
		err     error
	}
)

// slot is one worker position in the pool; its id is stable across restarts.
type slot struct {
	id       string
	pid      *actor.PID
	inc      uint64 // the incarnation serving, 0 while down
	procPID  int
	started  time.Time
	inFlight int
	calls    uint64 // since the current process started
	total    uint64
	counters *slotCounters
	removed  bool
	restart  trace.Span // from the failure until the slot serves again
}

func (s *slot) state() string {
	switch {
	case s.inc != 0:
		return "ready"
	default:
		return "down"
	}
}

// pending is a call waiting for a worker.
type pending struct {
	id      uint64
	msg     any // *messages.Execute or *messages.ExecuteStream
	sender  *actor.PID
	header  map[string]string
	session string
	ctx     context.Context // the span the call continues from (receive, then queue wait)
	wait    trace.Span      // open while the call is queued
	queued  time.Time       // when it entered the queue
}

// done ends the queue-wait span, if any, with err as its outcome.
func (q *pending) done(err error) {
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
func (q *pending) callerGone() error {
	switch m := q.msg.(type) {
	case *messages.Execute:
		return m.Ctx.Err()
	case *messages.ExecuteStream:
		return m.Ctx.Err()
	}
	return nil
}

// pool is a Pool actor: it routes calls to its workers, queues them when all are busy,
// and supervises the workers through a supervision.Supervisor child.
type pool struct {
	otelactor.Traced
	spec     *PoolSpec
	tracer   trace.Tracer
	log      zerolog.Logger
	startSem chan struct{}

	workers  *supervision.Handle
	slots    []*slot
	byID     map[string]*slot
	next     int // round-robin start
	queue    []*pending
	queueSeq uint64
	sessions map[string]*slot

	state       string
	err         error
	readyOnce   *sync.Once
	lastFailure error
	restarts    map[string]int
	recycled    map[string]int
	rejected    map[string]int
	completed   uint64
	drainers    []*actor.PID
	stopRecycle chan struct{} // closed when the pool stops: ends the recycle ticker

	attrs         metric.MeasurementOption // pool=<name>
	countersMu    sync.Mutex               // guards counters: read at metric collection
	counters      map[string]*slotCounters
	stopObserving func() error
}

// workersStrategy is the pool's protoactor strategy for its one child, the workers'
// supervisor: when that supervisor fails (it has already stopped every worker), the
// pool is told and the child is stopped.
type workersStrategy struct{}

func (workersStrategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	if c, ok := sup.(actor.Context); ok {
		system.Root.Send(c.Self(), &workersFailed{reason: reason})
	}
	sup.StopChildren(child)
}

func (p *pool) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx)
	case *messages.Execute:
		p.admit(ctx, &pending{msg: msg, sender: ctx.Sender(), header: headerMap(ctx), session: msg.Call.SessionID, ctx: p.MessageContext()})
	case *messages.ExecuteStream:
		p.admit(ctx, &pending{msg: msg, sender: ctx.Sender(), header: headerMap(ctx), session: msg.Call.SessionID, ctx: p.MessageContext()})
	case *redispatch:
		p.requeue(ctx, msg)
	case *workerReady:
		p.ready(ctx, msg)
	case *workerDown:
		if s := p.byID[msg.slot]; s != nil && s.inc == msg.inc {
			p.down(s)
		}
	case *callFinished:
		p.finished(ctx, msg)
	case *queueExpired:
		p.expire(ctx, msg.id)
	case *recycleCheck:
		p.recycleByAgeAndMemory(ctx)
	case supervision.Event:
		p.supervisionEvent(msg)
	case *workersFailed:
		p.fail(ctx, msg.reason)
	case *messages.GetStats:
		ctx.Respond(p.stats())
	case *messages.Resize:
		p.resize(ctx, msg.Workers)
	case *resized:
		p.forget(msg.removed)
		ctx.Send(msg.sender, &messages.Ack{Err: msg.err})
	case *messages.Drain:
		p.drain(ctx, msg)
	case *drainExpired:
		p.answerDrainers(ctx)
	case *supervision.ShutdownRequest:
		p.shutdown(ctx)
	case *actor.Stopping, *actor.Restarting:
		if p.stopObserving != nil {
			_ = p.stopObserving()
			p.stopObserving = nil
		}
		if p.stopRecycle != nil {
			close(p.stopRecycle)
			p.stopRecycle = nil
		}
		p.failQueue(ctx, ErrStopped)
	}
}

func (p *pool) start(ctx actor.Context) {
	p.log = p.spec.Logger.With().Str("pool", p.spec.Name).Logger()
	p.tracer = p.spec.TracerProvider.Tracer(instrumentation)
	p.attrs = metric.WithAttributes(attribute.String(telemetry.LabelPool, p.spec.Name))
	p.counters = map[string]*slotCounters{}
	p.zeroMetrics()
	if stop, err := p.spec.Metrics.ObserveMemory(p.observeMemory); err == nil {
		p.stopObserving = stop
	} else {
		p.log.Warn().Err(err).Msg("worker memory will not be reported")
	}
	p.startSem = make(chan struct{}, max(p.spec.StartupBatch, 1))
	p.byID = map[string]*slot{}
	p.sessions = map[string]*slot{}
	p.restarts, p.recycled, p.rejected = map[string]int{}, map[string]int{}, map[string]int{}
	p.state = StateStarting
	spec := supervision.Spec{
		Strategy:    supervision.OneForOne,
		MaxRestarts: p.spec.MaxRestarts,
		Within:      p.spec.Within,
		Backoff:     p.spec.Backoff,
	}
	for i := range p.spec.Workers {
		spec.Children = append(spec.Children, p.child(ctx, p.slotID(i)))
	}
	system, self := ctx.ActorSystem(), ctx.Self()
	props, err := supervision.Props(spec, supervision.WithEventHook(func(e supervision.Event) {
		system.Root.Send(self, e)
	}))
	if err != nil {
		p.fail(ctx, err)
		return
	}
	pid, err := ctx.SpawnNamed(props, "workers")
	if err != nil {
		p.fail(ctx, err)
		return
	}
	p.workers = supervision.Attach(system, pid)
	if r := p.spec.Recycle; r.MaxAge > 0 || r.MaxRSSBytes > 0 {
		tick, stop := time.NewTicker(recycleInterval(r.MaxAge)), make(chan struct{})
		p.stopRecycle = stop
		go func() {
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					system.Root.Send(self, &recycleCheck{})
				case <-stop:
					return
				}
			}
		}()
	}
}

func recycleInterval(maxAge time.Duration) time.Duration {
	if maxAge > 0 && maxAge/4 < time.Second {
		return max(maxAge/4, 10*time.Millisecond)
	}
	return time.Second
}

func (p *pool) slotID(i int) string { return p.spec.Name + "-" + strconv.Itoa(i) }

// child registers slot id and returns its child spec.
func (p *pool) child(ctx actor.Context, id string) supervision.Child {
	s := &slot{id: id, counters: &slotCounters{}}
	p.slots = append(p.slots, s)
	p.byID[id] = s
	p.countersMu.Lock()
	p.counters[id] = s.counters
	p.countersMu.Unlock()
	return supervision.Child{
		ID:       id,
		Producer: newWorkerProducer(p.spec, id, ctx.Self(), p.startSem, s.counters),
		Options:  tracingOptions(*p.spec),
		Restart:  supervision.Permanent,
		Shutdown: supervision.Timeout(p.spec.StopTimeout + 2*time.Second),
	}
}

func (p *pool) ready(ctx actor.Context, msg *workerReady) {
	s := p.byID[msg.slot]
	if s == nil || s.removed {
		return
	}
	s.inc, s.procPID, s.started, s.calls, s.inFlight = msg.inc, msg.pid, msg.started, 0, 0
	s.counters.pid.Store(int64(msg.pid))
	p.recordWorkers()
	if s.restart != nil {
		s.restart.SetAttributes(attribute.Int("process.pid", msg.pid))
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

// startRestartSpan opens the span of a worker's restart, linked to the calls its
// failure cut short, with the reason and the failure's stack trace.
func (p *pool) startRestartSpan(s *slot, ev *supervision.ChildFailed, reason string, err error) {
	if s.restart != nil {
		s.restart.End()
	}
	_, s.restart = p.tracer.Start(context.Background(), "restart "+s.id,
		trace.WithLinks(failureLinks(ev.Reason)...),
		trace.WithAttributes(
			attribute.String("pyvisor.pool", p.spec.Name),
			attribute.String("pyvisor.worker", s.id),
			attribute.String("pyvisor.restart.reason", reason),
			attribute.String("pyvisor.failure.stack", ev.Stack.String()),
		))
	s.restart.RecordError(err)
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
	s.inc, s.inFlight = 0, 0
	s.counters.pid.Store(0)
	defer p.recordWorkers()
	for id, owner := range p.sessions {
		if owner == s {
			delete(p.sessions, id)
		}
	}
}

func (p *pool) supervisionEvent(e supervision.Event) {
	switch ev := e.(type) {
	case *supervision.ChildStarted:
		if s := p.byID[ev.ID]; s != nil {
			s.pid = ev.PID
		}
	case *supervision.ChildFailed:
		reason, err := failureReason(ev.Reason)
		p.lastFailure = err
		p.restarts[reason]++
		wa := metric.WithAttributes(attribute.String(telemetry.LabelWorker, ev.ID), attribute.String(telemetry.LabelReason, reason))
		p.spec.Metrics.WorkerExits.Add(context.Background(), 1, p.attrs, wa)
		p.spec.Metrics.WorkerRestarts.Add(context.Background(), 1, p.attrs, wa)
		if s := p.byID[ev.ID]; s != nil {
			p.down(s)
			p.startRestartSpan(s, ev, reason, err)
		}
		p.log.Warn().Str("worker", ev.ID).Str("reason", reason).Err(err).Msg("worker failed; its supervisor restarts it")
	case *supervision.ChildRestarted:
		p.spec.Metrics.SupervisorRestarts.Add(context.Background(), 1, p.attrs)
	case *supervision.ChildStopped:
		p.spec.Metrics.WorkerExits.Add(context.Background(), 1, p.attrs, metric.WithAttributes(
			attribute.String(telemetry.LabelWorker, ev.ID), attribute.String(telemetry.LabelReason, "stop")))
	case *supervision.IntensityExceeded:
		p.log.Error().Str("worker", ev.ID).Int("restarts", ev.Restarts).Dur("within", ev.Within).Msg("worker restart intensity exceeded; the pool gives up")
	}
}

// admit takes a new call: dispatch, queue or reject.
func (p *pool) admit(ctx actor.Context, q *pending) {
	switch p.state {
	case StateFailed:
		p.reply(ctx, q, fmt.Errorf("pool %s: %w: %w", p.spec.Name, ErrPoolFailed, p.err))
		return
	case StateDraining:
		p.reject("stopped")
		p.reply(ctx, q, fmt.Errorf("pool %s: %w", p.spec.Name, ErrStopped))
		return
	}
	if s := p.pick(q.session); s != nil && len(p.queue) == 0 {
		p.send(ctx, s, q)
		return
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
	if q.wait == nil && trace.SpanContextFromContext(q.ctx).IsValid() {
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
	time.AfterFunc(p.spec.QueueTimeout, func() { system.Root.Send(self, &queueExpired{id: id}) })
}

// requeue takes back a call its worker could not run (restarting, or an idempotent
// call whose worker died): it goes first in line.
func (p *pool) requeue(ctx actor.Context, r *redispatch) {
	q := &pending{msg: r.msg, sender: r.sender, header: r.header}
	if e, ok := r.msg.(*messages.Execute); ok {
		q.session = e.Call.SessionID
	} else if s, ok := r.msg.(*messages.ExecuteStream); ok {
		q.session = s.Call.SessionID
	}
	if p.state == StateFailed || p.state == StateDraining {
		p.reply(ctx, q, fmt.Errorf("pool %s: %w", p.spec.Name, ErrStopped))
		return
	}
	p.enqueue(ctx, q, true)
	p.dispatch(ctx)
}

// dispatch sends queued calls, in order, to workers that can take them. A strict
// session call waiting for its busy worker does not hold up the calls behind it.
func (p *pool) dispatch(ctx actor.Context) {
	kept := p.queue[:0]
	for _, q := range p.queue {
		if err := q.callerGone(); err != nil {
			p.reply(ctx, q, err) // nobody waits for it any more: don't run it
			continue
		}
		if s := p.pick(q.session); s != nil {
			p.send(ctx, s, q)
			continue
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
	if session != "" {
		if owner, ok := p.sessions[session]; ok {
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
	for i := range n {
		s := p.slots[(p.next+i)%n]
		if p.available(s) && (best == nil || s.inFlight < best.inFlight) {
			best = s
		}
	}
	if best != nil {
		p.next = (p.next + 1) % max(n, 1)
		if session != "" {
			if _, bound := p.sessions[session]; !bound {
				p.sessions[session] = best
			}
		}
	}
	return best
}

func (p *pool) available(s *slot) bool {
	return s.inc != 0 && !s.removed && s.inFlight < p.spec.MaxConcurrent && !p.recycleDue(s)
}

func (p *pool) send(ctx actor.Context, s *slot, q *pending) {
	s.inFlight++
	q.done(nil)
	if !q.queued.IsZero() {
		p.spec.Metrics.QueueWait.Record(context.Background(), time.Since(q.queued).Seconds(), p.attrs)
	}
	if q.ctx == nil {
		q.ctx = context.Background()
	}
	Forward(q.ctx, ctx, p.spec.Propagator, s.pid, q.header, q.sender, q.msg)
}

func (p *pool) finished(ctx actor.Context, msg *callFinished) {
	p.completed++
	s := p.byID[msg.slot]
	if s == nil || s.inc != msg.inc {
		p.dispatch(ctx)
		return
	}
	s.inFlight--
	s.calls++
	s.total++
	if p.recycleDue(s) && s.inFlight == 0 {
		p.recycle(ctx, s, "max_calls")
	}
	p.dispatch(ctx)
	if p.state == StateDraining && p.inFlight() == 0 {
		p.answerDrainers(ctx)
	}
}

func (p *pool) recycleDue(s *slot) bool {
	return p.spec.Recycle.MaxCalls > 0 && s.calls >= p.spec.Recycle.MaxCalls
}

func (p *pool) recycle(ctx actor.Context, s *slot, reason string) {
	p.recycled[reason]++
	p.spec.Metrics.WorkerExits.Add(context.Background(), 1, p.attrs, metric.WithAttributes(
		attribute.String(telemetry.LabelWorker, s.id), attribute.String(telemetry.LabelReason, "recycle_"+reason)))
	p.down(s)
	ctx.Send(s.pid, &recycleWorker{reason: reason})
}

func (p *pool) recycleByAgeAndMemory(ctx actor.Context) {
	r := p.spec.Recycle
	for _, s := range p.slots {
		if s.inc == 0 || s.removed || s.inFlight > 0 {
			continue
		}
		switch {
		case r.MaxAge > 0 && time.Since(s.started) >= r.MaxAge:
			p.recycle(ctx, s, "max_age")
		case r.MaxRSSBytes > 0 && rss(s.procPID) >= r.MaxRSSBytes:
			p.recycle(ctx, s, "max_memory")
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
	switch m := q.msg.(type) {
	case *messages.Execute:
		ctx.Send(q.sender, &messages.ExecuteResult{Err: err})
	case *messages.ExecuteStream:
		select { // never block the pool: the caller's channel is buffered
		case m.Chunks <- messages.StreamChunk{Err: err}:
		default:
		}
	}
}

func (p *pool) failQueue(ctx actor.Context, err error) {
	for _, q := range p.queue {
		p.reply(ctx, q, fmt.Errorf("pool %s: %w", p.spec.Name, err))
	}
	p.queue = nil
	p.recordQueue()
}

func (p *pool) fail(ctx actor.Context, reason any) {
	err, _ := reason.(error)
	if err == nil {
		err = fmt.Errorf("%v", reason)
	}
	if p.lastFailure != nil {
		err = fmt.Errorf("%w; last worker failure: %w", err, p.lastFailure)
	}
	p.state, p.err = StateFailed, err
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
	time.AfterFunc(time.Until(msg.Deadline), func() { system.Root.Send(self, &drainExpired{}) })
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
	p.state = StateDraining
	p.failQueue(ctx, ErrStopped)
	if p.workers == nil {
		ctx.Stop(ctx.Self())
		return
	}
	system, self, workers := ctx.ActorSystem(), ctx.Self(), p.workers
	timeout := time.Duration(len(p.slots)+1) * (p.spec.StopTimeout + 3*time.Second)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = workers.Stop(sctx)
		system.Root.Stop(self)
	}()
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
			if _, taken := p.byID[p.slotID(i)]; !taken {
				add = append(add, p.child(ctx, p.slotID(i)))
			}
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
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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

// zeroMetrics makes the pool's series exist from its start (at 0), so dashboards and
// alerts see "nothing happened" rather than "no data".
func (p *pool) zeroMetrics() {
	bg, m := context.Background(), p.spec.Metrics
	for _, reason := range []string{"queue_full", "queue_timeout", "stopped"} {
		m.Rejections.Add(bg, 0, p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelReason, reason)))
	}
	m.SupervisorRestarts.Add(bg, 0, p.attrs)
	m.SupervisorEscalated.Add(bg, 0, p.attrs)
	m.QueueDepth.Record(bg, 0, p.attrs)
}

// reject counts a call refused without running.
func (p *pool) reject(reason string) {
	p.rejected[reason]++
	p.spec.Metrics.Rejections.Add(context.Background(), 1, p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelReason, reason)))
}

func (p *pool) recordQueue() {
	p.spec.Metrics.QueueDepth.Record(context.Background(), int64(len(p.queue)), p.attrs)
}

// recordWorkers sets the workers-by-state gauge.
func (p *pool) recordWorkers() {
	ready, down := 0, 0
	for _, s := range p.slots {
		switch {
		case s.removed:
		case s.inc != 0:
			ready++
		default:
			down++
		}
	}
	bg := context.Background()
	p.spec.Metrics.Workers.Record(bg, int64(ready), p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelState, "ready")))
	p.spec.Metrics.Workers.Record(bg, int64(down), p.attrs, metric.WithAttributes(attribute.String(telemetry.LabelState, "down")))
}

// observeMemory reports each serving worker's resident memory (at collection time, on
// the collector's goroutine: it reads only the counters' atomics).
func (p *pool) observeMemory(record func(int64, ...attribute.KeyValue)) {
	p.countersMu.Lock()
	defer p.countersMu.Unlock()
	for id, c := range p.counters {
		if pid := c.pid.Load(); pid > 0 {
			if b := rss(int(pid)); b > 0 {
				record(b, attribute.String(telemetry.LabelPool, p.spec.Name), attribute.String(telemetry.LabelWorker, id))
			}
		}
	}
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

func (p *pool) stats() *messages.PoolStats {
	st := &messages.PoolStats{
		Pool:      p.spec.Name,
		State:     p.state,
		Err:       p.err,
		Queued:    len(p.queue),
		Restarts:  copyCounts(p.restarts),
		Recycled:  copyCounts(p.recycled),
		Rejected:  copyCounts(p.rejected),
		Completed: p.completed,
	}
	for _, s := range p.slots {
		if s.removed {
			continue
		}
		st.Workers = append(st.Workers, messages.WorkerStats{
			ID: s.id, PID: s.procPID, State: s.state(), InFlight: s.inFlight, Calls: s.total, Started: s.started,
			HeartbeatPings: s.counters.pings.Load(), HeartbeatMisses: s.counters.misses.Load(),
		})
	}
	return st
}

func copyCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// tracingOptions adds the receive-span middleware, unless tracing is off (a noop
// provider), when it would only cost time.
func tracingOptions(spec PoolSpec) []actor.PropsOption {
	if _, off := spec.TracerProvider.(tracenoop.TracerProvider); off {
		return nil
	}
	return []actor.PropsOption{actor.WithReceiverMiddleware(otelactor.ReceiverMiddleware(spec.TracerProvider, spec.Propagator))}
}

// PoolChildID is the guardian's child id of the pool named name.
func PoolChildID(name string) string { return "pool-" + name }

// PoolChild is the guardian's child spec of a Pool actor for spec: permanent, stopped
// gracefully (it stops its workers in reverse order first).
func PoolChild(spec PoolSpec) supervision.Child {
	s := spec
	once := &sync.Once{}
	return supervision.Child{
		ID:       PoolChildID(spec.Name),
		Producer: func() actor.Actor { return &pool{spec: &s, readyOnce: once} },
		Options:  append([]actor.PropsOption{actor.WithSupervisor(workersStrategy{})}, tracingOptions(s)...),
		Restart:  supervision.Permanent,
		Shutdown: supervision.Infinity(),
		TrapExit: true,
	}
}
