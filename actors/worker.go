package actors

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/telemetry"
	"github.com/pyvisor/pyvisor/telemetry/otelactor"
)

// Messages between a Worker, its Pool and its own goroutines.
type (
	// processStarted: the goroutine starting a process is done.
	processStarted struct {
		start *start
		proc  *bridge.Process
		err   error
	}
	// processExited: the current process exited.
	processExited struct{ proc *bridge.Process }
	// workerReady tells the pool a slot serves.
	workerReady struct {
		slot    string
		inc     uint64
		proc    *live // lent to calls by the pool, owned by the worker
		started time.Time
	}
	// workerLoading tells the pool a slot's new process has handed over and is loading
	// its tools modules (the load phase), until its workerReady.
	workerLoading struct {
		slot string
		pid  int
	}
	// workerDown tells the pool a slot's process is gone (restart, recycle, stop).
	workerDown struct {
		slot string
		inc  uint64
	}
	// callFinished tells the pool a call on a slot ended, and whether it failed.
	callFinished struct {
		slot    string
		inc     uint64
		session string
		failed  bool
	}
	// redispatch hands a call (*messages.Execute or *messages.ExecuteStream) back to
	// the pool, first in line: an idempotent call to retry after its worker died under
	// it, or one granted a process that exited before the call was sent.
	redispatch struct {
		msg any
	}
	// recycleWorker asks a worker to replace its process; the pool sends it only
	// when nothing is in flight on the slot.
	recycleWorker struct{ reason string }
	// retired: a recycled process has finished stopping.
	retired struct{ proc *bridge.Process }
	// bodyStuck: a cancelled call's Python body outlived the cancel grace on the
	// process of incarnation inc.
	bodyStuck struct {
		inc  uint64
		tool string
	}
	// heartbeatFailed: the worker's Heartbeat gave up.
	heartbeatFailed struct {
		from   *actor.PID // the heartbeat that gave up: a stale one is ignored
		misses int
		last   error
	}
)

// slotCounters are a slot's counts that outlive its actor values.
type slotCounters struct {
	pings, pongs, misses atomic.Uint64
	pid                  atomic.Int64 // of the serving Python process, 0 while down
	// version is the label of the code the slot runs ("": its hash), kept across restarts.
	version atomic.Pointer[string]
	// code is the version of the code the serving process loaded, "" while down.
	code atomic.Pointer[string]
	// bridge are the options the slot's processes start with since an Upgrade changed
	// them; nil: the pool spec's.
	bridge atomic.Pointer[[]bridge.Option]
}

// setBridge makes opts the options the slot's processes start with. It stores its own
// copy of the slice header: a pointer to a field the caller reuses (the next upgrade's
// options) would change them behind the slot's back.
// start is what the slot's processes start with now.
func (c *slotCounters) start() slotStart {
	return slotStart{label: c.label(), bridge: c.bridge.Load()}
}

func (c *slotCounters) setBridge(opts []bridge.Option) {
	c.bridge.Store(&opts)
}

// label is the slot's code label ("": the code's hash).
func (c *slotCounters) label() string {
	if v := c.version.Load(); v != nil {
		return *v
	}
	return ""
}

func (c *slotCounters) setLabel(label string) { c.version.Store(&label) }

// incarnations numbers every Worker actor value, so late messages about an earlier
// process are recognised.
var incarnations atomic.Uint64

// worker is a Worker actor: it owns exactly one Python process.
type worker struct {
	otelactor.Traced
	spec     *PoolSpec
	slot     string
	index    int
	env      []bridge.Option // the slot's environment
	pool     *actor.PID
	startSem chan struct{}
	counters *slotCounters

	inc      uint64
	starting *start
	proc     *live
	retiring map[*bridge.Process]bool // recycled, upgraded or rolled-back processes still stopping
	// An upgrade under way (workerupgrade.go): the new code's process starting, then
	// warming up; once it serves, the old one parked for a rollback.
	next       *start
	nextInc    uint64
	nextLabel  string
	nextBridge []bridge.Option
	// procStart is what the serving process started with: a rollback compares it with
	// what the pool restored; parkedStart, what the parked one did.
	procStart, parkedStart slotStart
	seq                    uint64 // the upgrade this worker answers

	warming   *bridge.Process
	parked    *live
	heartbeat *actor.PID
	log       zerolog.Logger
}

func newWorkerProducer(spec *PoolSpec, slot workerSlot, pool *actor.PID, startSem chan struct{}, counters *slotCounters) actor.Producer {
	env := slot.options()
	return func() actor.Actor {
		return &worker{spec: spec, slot: slot.id, index: slot.index, env: env, pool: pool, startSem: startSem, counters: counters}
	}
}

func (w *worker) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		w.inc = incarnations.Add(1)
		w.log = w.spec.Logger.With().Str("pool", w.spec.Name).Int("slot", w.index).Str("worker", w.slot).Logger()
		w.startProcess(ctx)
	case *processStarted:
		if w.next != nil && msg.start == w.next {
			w.nextStarted(ctx, msg)
			return
		}
		w.started(ctx, msg)
	case *upgradeWorker:
		w.upgrade(ctx, msg)
	case *warmedUp:
		w.warmedUp(ctx, msg)
	case *swapNow:
		w.swapNow(ctx, msg)
	case *sessionsMoved:
		w.swap(ctx, msg)
	case *finishUpgrade:
		w.finishUpgrade(ctx)
	case *moveParked:
		w.moveParked(ctx, msg)
	case *killForMemory:
		w.killForMemory(msg)
	case *rollbackUpgrade:
		w.rollback(ctx)
	case *processExited:
		if w.proc != nil && msg.proc == w.proc.Process {
			panic(&crash{err: msg.proc.Err(), calls: w.proc.links()})
		}
	case *heartbeatFailed:
		if w.heartbeat == nil || !msg.from.Equal(w.heartbeat) {
			return // from a heartbeat of a process already let go
		}
		w.log.Error().Int("misses", msg.misses).AnErr("last_error", msg.last).Msg("heartbeat gave up on the python worker")
		var calls []trace.Link
		if w.proc != nil {
			calls = w.proc.links()
		}
		panic(&heartbeatFailure{misses: msg.misses, last: msg.last, calls: calls})
	case *bodyStuck:
		if msg.inc != w.inc || w.proc == nil {
			return // about a process already let go
		}
		w.log.Error().Str("tool", msg.tool).Dur("cancel_grace", w.spec.CancelGrace).
			Msg("a cancelled call's python body is still running past its grace; replacing the worker")
		panic(&stuckBody{tool: msg.tool, grace: w.spec.CancelGrace, calls: w.proc.links()})
	case *recycleWorker:
		w.recycle(ctx, msg.reason)
	case *retired:
		delete(w.retiring, msg.proc)
	case *actor.Restarting:
		w.release(ctx, true)
	case *supervision.ShutdownRequest:
		// Stop gracefully, then let what is already in the mailbox through before
		// stopping: Stop would drop it.
		w.release(ctx, false)
		ctx.Poison(ctx.Self())
	case *actor.Stopping:
		w.release(ctx, false)
	}
}

// startProcess starts a process on a goroutine (at most StartupBatch at once per pool)
// and reports back with processStarted.
func (w *worker) startProcess(ctx actor.Context) {
	w.procStart = w.counters.start()
	w.starting = w.spawn(ctx, w.counters.label(), w.inc, w.bridge())
}

// bridge are the options the slot's processes start with: an Upgrade's, else the spec's.
func (w *worker) bridge() []bridge.Option {
	if b := w.counters.bridge.Load(); b != nil {
		return *b
	}
	return w.spec.Bridge
}

// spawn starts a process of the code on disk with the options base (and the slot's
// environment), labelled label ("": its hash), whose stuck bodies are reported for
// incarnation inc.
func (w *worker) spawn(ctx actor.Context, label string, inc uint64, base []bridge.Option) *start {
	system, self, sem, pool, slot := ctx.ActorSystem(), ctx.Self(), w.startSem, w.pool, w.slot
	opts := append(append(append([]bridge.Option(nil), base...), w.env...),
		bridge.WithLoading(func(pid int) { system.Root.Send(pool, &workerLoading{slot: slot, pid: pid}) }),
		bridge.WithStuckBody(func(tool string) { system.Root.Send(self, &bodyStuck{inc: inc, tool: tool}) }),
		bridge.WithWorkerID(w.slot),
		bridge.WithLogger(w.spec.Logger.With().Str("pool", w.spec.Name).Int("slot", w.index).Logger()),
		bridge.WithTracerProvider(w.spec.TracerProvider),
		bridge.WithPropagator(w.spec.Propagator),
		bridge.WithTraceHeartbeats(w.spec.Heartbeat.Trace))
	if label != "" {
		opts = append(opts, bridge.WithCodeVersion(label))
	}
	if w.spec.CancelGrace > 0 { // else the bridge's default
		opts = append(opts, bridge.WithCancelGrace(w.spec.CancelGrace))
	}
	st := newStart()
	m, attrs := w.spec.Metrics, metric.WithAttributes(attribute.String(telemetry.LabelPool, w.spec.Name), attribute.String(telemetry.LabelWorker, w.slot))
	go func() {
		defer close(st.over)
		select {
		case sem <- struct{}{}:
		case <-st.ctx.Done():
			return // abandoned before its turn: nothing was spawned
		}
		began := time.Now()
		p, err := bridge.Start(st.ctx, opts...)
		<-sem
		if st.ctx.Err() != nil && err != nil {
			return // abandoned during its handshake: bridge.Start killed the process
		}
		if err != nil {
			m.WorkerStarts.Add(context.Background(), 1, attrs, metric.WithAttributes(attribute.String(telemetry.LabelOutcome, "error")))
		} else {
			m.WorkerStarts.Add(context.Background(), 1, attrs, metric.WithAttributes(attribute.String(telemetry.LabelOutcome, "ok")))
			m.WorkerStartup.Record(context.Background(), time.Since(began).Seconds(), attrs)
		}
		if p != nil && !st.deliver(p) {
			_ = p.Kill(context.Background())
			return
		}
		system.Root.Send(self, &processStarted{start: st, proc: p, err: err})
	}()
	return st
}

func (w *worker) started(ctx actor.Context, msg *processStarted) {
	if msg.start != w.starting {
		return // abandoned: its process was killed by whoever abandoned it
	}
	w.starting = nil
	if msg.err != nil {
		w.log.Error().Err(msg.err).Msg("python worker did not start")
		panic(&startFailure{err: msg.err})
	}
	w.serve(ctx, msg.proc, func(r workerReady) any { return &r })
	w.restartIfStale(ctx) // started before an upgrade changed what the slot starts with
}

// serve makes p the process the worker serves from, and tells the pool in the message
// ready wraps (a workerReady, or an upgrade's workerUpgraded).
func (w *worker) serve(ctx actor.Context, p *bridge.Process, ready func(workerReady) any) {
	system, self := ctx.ActorSystem(), ctx.Self()
	go func() {
		<-p.Done()
		system.Root.Send(self, &processExited{proc: p})
	}()
	w.serveLive(ctx, newLive(p), ready)
}

// serveLive serves from l, whose exit the worker already watches, as incarnation w.inc.
func (w *worker) serveLive(ctx actor.Context, l *live, ready func(workerReady) any) {
	w.proc = l
	p, self := l.Process, ctx.Self()
	if hb := w.spec.Heartbeat; hb.Enabled {
		w.heartbeat = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
			return &heartbeat{spec: hb, client: p.Client(), worker: self, counters: w.counters, log: w.log,
				tracer: w.spec.TracerProvider.Tracer(instrumentation), metrics: w.spec.Metrics,
				attrs: metric.WithAttributes(attribute.String(telemetry.LabelPool, w.spec.Name), attribute.String(telemetry.LabelWorker, w.slot))}
		}))
	}
	w.log.Info().Int("pid", p.PID()).Str("version", p.CodeVersion()).Msg("python worker ready")
	ctx.Send(w.pool, ready(workerReady{slot: w.slot, inc: w.inc, proc: l, started: time.Now()}))
}

// recycle replaces a healthy process with a fresh one, outside supervision (a recycle
// is not a failure).
func (w *worker) recycle(ctx actor.Context, reason string) {
	if w.proc == nil {
		return
	}
	w.log.Info().Str("reason", reason).Int("pid", w.proc.PID()).Msg("recycling python worker")
	w.stopHeartbeat(ctx)
	if old := w.parked; old != nil { // an upgrade's old process goes with the one it replaced
		w.parked = nil
		w.retire(ctx, old.Process, w.spec.Upgrade.DrainTimeout, old.idle)
	}
	old := w.proc.Process
	w.proc = nil
	ctx.Send(w.pool, &workerDown{slot: w.slot, inc: w.inc})
	if w.retiring == nil {
		w.retiring = map[*bridge.Process]bool{}
	}
	w.retiring[old] = true
	system, self := ctx.ActorSystem(), ctx.Self()
	sctx, cancel := w.stopContext()
	go func() {
		defer cancel()
		_ = old.Stop(sctx)
		system.Root.Send(self, &retired{proc: old})
	}()
	w.inc = incarnations.Add(1)
	w.startProcess(ctx)
}

// release ends the process when the actor restarts (at once: it failed) or stops
// (gracefully, within the stop timeout). A restart kills and reaps the old process
// group before the new process starts.
func (w *worker) release(ctx actor.Context, brutal bool) {
	w.stopHeartbeat(ctx)
	ctx.Send(w.pool, &workerDown{slot: w.slot, inc: w.inc})
	w.dropUpgrade(brutal)
	for p := range w.retiring {
		// A recycled or upgraded process still stopping goes with the worker, not after
		// it: at once when the worker failed, else with its calls' grace.
		if brutal {
			_ = p.Kill(context.Background())
		} else {
			w.stopNow(p)
		}
		delete(w.retiring, p)
	}
	if st := w.starting; st != nil {
		if p := st.abandon(); p != nil {
			_ = p.Kill(context.Background())
		}
		<-st.over // a process it spawned is gone too
		w.starting = nil
	}
	if w.proc == nil {
		return
	}
	p := w.proc.Process
	w.proc = nil
	if brutal {
		_ = p.Kill(context.Background()) // SIGKILL, then the reap: moments, bounded by Kill
		return
	}
	sctx, cancel := w.stopContext()
	defer cancel()
	if err := p.Stop(sctx); err != nil {
		w.log.Warn().Err(err).Msg("stopping python worker")
		// Cut short (halted, or past the stop timeout): the stop under way kills the
		// process group now; wait for it to be reaped, which takes moments.
		_ = p.Kill(context.Background())
	}
}

// stopNow stops p gracefully within the stop timeout, then kills it.
func (w *worker) stopNow(p *bridge.Process) {
	sctx, cancel := w.stopContext()
	defer cancel()
	if err := p.Stop(sctx); err != nil {
		_ = p.Kill(context.Background())
	}
}

// stopContext bounds the graceful stop of the worker's process: the stop timeout (and
// a second for the kill), or less if the pool's owner halts first.
func (w *worker) stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), w.spec.StopTimeout+time.Second)
	if halt := w.spec.Halt; halt != nil {
		go func() {
			select {
			case <-halt:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

func (w *worker) stopHeartbeat(ctx actor.Context) {
	if w.heartbeat != nil {
		ctx.Stop(w.heartbeat)
		w.heartbeat = nil
	}
}
