package actors

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/pyvisor/pyvisor/bridge"
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
	// recycleCheck: time to check the recycle rules; gpu is GPU memory by pid, with
	// descendants (see gpuWatch), nil when it was not read.
	recycleCheck struct{ gpu map[int]int64 }
	drainExpired struct{}
	// shutdownExpired: the workers did not stop within the pool's shutdown budget.
	shutdownExpired struct{}
	// workersFailed: the workers' supervisor gave up (restart intensity exceeded).
	workersFailed struct{ reason any }
	resized       struct {
		sender  *actor.PID
		removed []*slot // terminated and deleted: their ids are free again
		err     error
	}
)

// slot is one worker position in the pool; its id "<pool>-<index>" is stable across
// restarts and recycles.
type slot struct {
	id       string
	index    int
	pid      *actor.PID
	inc      uint64 // the incarnation serving, 0 while down
	proc     *live  // the serving process, lent to calls; nil while down
	started  time.Time
	inFlight int
	// sessionCalls counts the calls running per session, for an upgrade's session move.
	sessionCalls map[string]int
	// After an upgrade's swap with a session deadline (pinned.go): the old process, still
	// serving the sessions pinned to it until they end or move.
	old                     *live
	oldInc                  uint64
	oldInFlight             int
	pinned                  map[string]bool
	deadline                *time.Timer
	movingPinned, moveAsked bool
	calls                   uint64 // since the current process started
	total                   uint64
	counters                *slotCounters
	loading                 int // the pid of the slot's process while it loads its tools, else 0
	removed                 bool
	restart                 trace.Span // from the failure until the slot serves again
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// procPID is the serving (or loading) process's pid, 0 while down.
func (s *slot) procPID() int {
	if s.proc == nil {
		return s.loading
	}
	return s.proc.PID()
}

// version names the tool code of the serving process, "" while down.
func (s *slot) version() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.CodeVersion()
}

// address is where the serving process listens, "" while down.
func (s *slot) address() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.Address()
}

func (s *slot) state() string {
	switch {
	case s.inc != 0:
		return "ready"
	case s.loading != 0:
		return "loading"
	default:
		return "down"
	}
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
	stops       []func() // what ends with the pool: tickers, metric callbacks (ticker.go)
	recent      *recency // the sessions by last use
	// The drain and shutdown deadlines, stopped with the pool: no timer outlives it.
	drainTimer, shutdownTimer *time.Timer
	workersGone               bool               // the workers' supervisor has terminated
	resizing                  bool               // a Resize is under way (they run one at a time)
	upgrade                   *upgrade           // a Reload under way, or nil
	upgrades                  uint64             // upgrades started, numbering them
	bridge                    []bridge.Option    // an Upgrade's options for new slots; nil: the spec's
	label                     string             // the last Upgrade's version label, for new slots
	cancelResize              context.CancelFunc // ends the Resize under way when the pool stops

	attrs      metric.MeasurementOption // pool=<name>
	countersMu sync.Mutex               // guards counters: read at metric collection
	counters   map[string]*slotCounters
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
	case *messages.Execute, *messages.ExecuteStream:
		p.admit(ctx, p.pending(ctx, msg))
	case *redispatch:
		p.requeue(ctx, msg)
	case *workerReady:
		p.ready(ctx, msg)
	case *workerLoading:
		if s := p.byID[msg.slot]; s != nil && s.inc == 0 && !s.removed {
			s.loading = msg.pid
			p.recordWorkers()
		}
	case *workerDown:
		if s := p.byID[msg.slot]; s != nil && s.inc == msg.inc {
			p.down(s)
			p.drained(ctx) // its calls in flight are gone with it
		}
	case *callFinished:
		p.finished(ctx, msg)
	case *queueExpired:
		p.expire(ctx, msg.id)
	case *recycleCheck:
		p.recycleIdle(ctx, msg)
	case supervision.Event:
		p.supervisionEvent(ctx, msg)
	case *workersFailed:
		p.fail(ctx, p.gaveUp(msg.reason))
	case *messages.GetStats:
		ctx.Respond(p.stats())
	case *messages.Resize:
		p.resize(ctx, msg.Workers)
	case *Upgrade:
		p.reload(ctx, msg)
	case *workerUpgraded:
		p.upgraded(ctx, msg)
	case *upgradeFailed:
		p.upgradeFailedOn(ctx, msg)
	case *canaryOver:
		p.canaryDone(ctx, msg)
	case *swapReady:
		p.swapReady(ctx, msg)
	case *sessionsExpire:
		p.expireSessions(ctx)
	case *overLimit:
		p.overMemory(ctx, msg)
	case *sessionDeadline:
		p.deadlinePassed(ctx, msg)
	case *parkedMoved:
		p.pinnedMoved(ctx, msg)
	case *CloseSession:
		p.closeSession(ctx, msg)
	case *sessionClosed:
		p.sessionClose(ctx, msg)
	case *resized:
		p.resizing = false
		p.cancelResize = nil
		p.forget(msg.removed)
		ctx.Send(msg.sender, &messages.Ack{Err: msg.err})
	case *messages.Drain:
		p.drain(ctx, msg)
	case *drainExpired:
		p.answerDrainers(ctx)
	case *actor.Terminated:
		if p.workers != nil && msg.Who.Equal(p.workers.PID()) {
			p.workersStopped(ctx)
		}
	case *shutdownExpired:
		ctx.Stop(ctx.Self())
	case *supervision.ShutdownRequest:
		p.shutdown(ctx)
	case *actor.Stopping, *actor.Restarting:
		p.abandonUpgrade(ctx)
		for _, s := range p.slots {
			p.unpin(s) // no session deadline fires into a pool gone
		}
		if p.cancelResize != nil {
			p.cancelResize() // its requests to the workers' supervisor would go unanswered
			p.cancelResize = nil
		}
		p.stopAll()
		stopTimer(p.drainTimer)
		stopTimer(p.shutdownTimer)
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
		p.onStop(func() { _ = stop() })
	} else {
		p.log.Warn().Err(err).Msg("worker memory will not be reported")
	}
	if stop, err := p.spec.Metrics.ObserveVersions(p.observeVersions); err == nil {
		p.onStop(func() { _ = stop() })
	} else {
		p.log.Warn().Err(err).Msg("worker code versions will not be reported")
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
		c, err := p.child(ctx, i, p.spec.Workers)
		if err != nil {
			p.fail(ctx, err)
			return
		}
		spec.Children = append(spec.Children, c)
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
	p.startRecycling(ctx)
	p.startExpiring(ctx)
	p.startSampling(ctx)
}

func (p *pool) slotID(i int) string { return p.spec.Name + "-" + strconv.Itoa(i) }

// slotIndex is the index of the slot whose id is id, -1 if it has none.
func (p *pool) slotIndex(id string) int {
	if s := p.byID[id]; s != nil {
		return s.index
	}
	return -1
}

// child registers the slot of index in a pool of workers workers and returns its child
// spec, or why the slot's environment cannot be made.
func (p *pool) child(ctx actor.Context, index, workers int) (supervision.Child, error) {
	var env map[string]string
	if p.spec.SlotEnv != nil {
		var err error
		if env, err = p.spec.SlotEnv(index, workers); err != nil {
			return supervision.Child{}, err
		}
	}
	id := p.slotID(index)
	s := &slot{id: id, index: index, counters: &slotCounters{}}
	if p.bridge != nil { // an Upgrade changed what the pool's processes start with
		s.counters.setBridge(p.bridge)
	}
	if p.label != "" {
		s.counters.setLabel(p.label)
	}
	p.slots = append(p.slots, s)
	p.byID[id] = s
	p.countersMu.Lock()
	p.counters[id] = s.counters
	p.countersMu.Unlock()
	return supervision.Child{
		ID:       id,
		Producer: newWorkerProducer(p.spec, workerSlot{id: id, index: index, env: env}, ctx.Self(), p.startSem, s.counters),
		Options:  tracingOptions(*p.spec),
		Restart:  supervision.Permanent,
		Shutdown: supervision.Timeout(p.spec.StopTimeout + 2*time.Second),
		TrapExit: true, // it stops itself once its process is stopped and its mailbox drained
	}, nil
}

// tracingOptions adds the receive-span middleware, unless tracing is off (a noop
// provider), when it would only cost time.
func tracingOptions(spec PoolSpec) []actor.PropsOption {
	if _, off := spec.TracerProvider.(tracenoop.TracerProvider); off {
		return nil
	}
	return []actor.PropsOption{actor.WithReceiverMiddleware(otelactor.ReceiverMiddleware(spec.TracerProvider, spec.Propagator))}
}

// poolThroughput is how many messages the pool handles before its mailbox yields the
// goroutine it runs on (protoactor's default).
const poolThroughput = 300

// PoolChildID is the guardian's child id of the pool named name.
func PoolChildID(name string) string { return "pool-" + name }

// PoolChild is the guardian's child spec of a Pool actor for spec: permanent, stopped
// gracefully (it stops its workers in reverse order first).
//
// Its mailbox runs on the goroutine of whoever sends to it (protoactor's synchronized
// dispatcher; one message at a time still): a call's trip into the pool and back costs
// no goroutine hand-off. That is safe because the pool's Receive never waits on anything
// slow (no I/O, no request to another actor; at most a short lock shared with the metrics
// collection).
func PoolChild(spec PoolSpec) supervision.Child {
	s := spec
	once := &sync.Once{}
	return supervision.Child{
		ID:       PoolChildID(spec.Name),
		Producer: func() actor.Actor { return &pool{spec: &s, readyOnce: once} },
		Options:  append([]actor.PropsOption{actor.WithSupervisor(workersStrategy{}), actor.WithDispatcher(actor.NewSynchronizedDispatcher(poolThroughput))}, tracingOptions(s)...),
		Restart:  supervision.Permanent,
		Shutdown: supervision.Infinity(),
		TrapExit: true,
	}
}
