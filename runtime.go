// Package pyvisor runs Python functions ("tools") from Go in supervised pools of Python
// worker processes, the Elixir/OTP way.
//
//	rt, err := pyvisor.Start(ctx, pyvisor.Config{Pools: []pyvisor.PoolConfig{{
//		Name: "default", Tools: []string{"myproject.tools"},
//	}}})
//	defer rt.Stop(context.Background())
//	res, err := rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 2})
//
// Each pool is an actor that routes calls to its workers and queues them when all are
// busy; each worker is an actor owning one Python process, restarted by its supervisor
// when the process crashes, fails to start or stops answering heartbeats.
package pyvisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/cluster"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/shm"
	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/telemetry"
)

// Runtime is a running set of pools. It is safe for concurrent use.
type Runtime struct {
	stopped    atomic.Bool   // Stop was called: calls get ErrStopped
	over       chan struct{} // closed once the first Stop has done its work
	stopErr    error         // that Stop's result, read after over is closed
	attrs      sync.Map      // callKey, payloadKey -> metric.MeasurementOption
	metrics    *telemetry.Metrics
	endpoint   *telemetry.MetricsEndpoint // nil unless cfg.Metrics.Enabled
	tracer     trace.Tracer
	prop       propagation.TextMapPropagator
	system     *actor.ActorSystem
	unwatch    func() // stops answering calls that find no pool
	caller     actors.Caller
	done       chan struct{} // closed once the pools have stopped
	halt       chan struct{} // closed once Stop's deadline has passed: see PoolSpec.Halt
	haltOnce   sync.Once
	guardian   *supervision.Handle
	pools      map[string]*actor.PID
	order      []string
	node       *cluster.Node         // nil without a cluster
	arenas     map[string]*shm.Arena // each pool's input arena; none with shared memory off
	thresholds map[string]int        // each pool's shared-memory threshold
	unobserve  func() error          // stops the shared-memory gauges
	watches    []*codeWatch          // development mode's, one per pool with Upgrade.Watch
	// shutdownTelemetry flushes and stops what WithTelemetryFromEnv built.
	shutdownTelemetry func(context.Context) error
	cfg               Config
	// hosting are the options the runtime gives each pool's processes beyond its
	// configuration (shared memory, span sink, callbacks), which Upgrade keeps.
	hosting map[string][]bridge.Option
	log     zerolog.Logger
}

// Option configures Start.
type Option func(*options)

type options struct {
	logger         zerolog.Logger
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
	pythonSpans    func(PythonSpan)
	callbacks      []callbackEntry
	remote         []remote.ConfigOption
	// WithTelemetryFromEnv, and which providers the program gave itself.
	fromEnv, tracerSet, meterSet, propagatorSet bool
}

// WithMeterProvider records the runtime's metrics with mp (default: the OpenTelemetry
// global, a no-op unless installed; nil keeps the default). With Config.Metrics.Enabled
// the runtime serves its own Prometheus endpoint instead, and mp is not used.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) {
		if mp != nil {
			o.meterProvider, o.meterSet = mp, true
		}
	}
}

// tracing reports whether tp makes spans that carry a trace (an SDK provider, sampled
// or not); the OpenTelemetry global with no SDK installed does not. Decided at Start.
func tracing(tp trace.TracerProvider) bool {
	_, span := tp.Tracer(instrumentation).Start(context.Background(), "probe")
	defer span.End()
	return span.SpanContext().IsValid()
}

// WithLogger receives the runtime's log lines, the Python workers' forwarded ones and
// protoactor's (default zerolog.Nop(); a zero zerolog.Logger writes nothing either).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTracerProvider sets where the runtime's spans go (default: the OpenTelemetry
// global, a no-op unless the program installed one; nil keeps the default).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		if tp != nil {
			o.tracerProvider, o.tracerSet = tp, true
		}
	}
}

// WithPropagator sets how trace context and baggage travel between actors and into
// Python (default: the OpenTelemetry global; nil keeps it. telemetry.Propagator() is W3C
// trace context and baggage).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) {
		if p != nil {
			o.propagator, o.propagatorSet = p, true
		}
	}
}

// PythonSpan is a span a Python worker ended, as WithPythonSpans hands it over.
type PythonSpan = bridge.PythonSpan

// WithPythonSpans has every worker write the spans it ends as JSON lines on stderr and
// hands each, decoded, to sink (the demo prints Go and Python spans as one tree from
// them). sink is called from the workers' stderr readers, concurrently; nil hands none.
func WithPythonSpans(sink func(PythonSpan)) Option {
	return func(o *options) { o.pythonSpans = sink }
}

// Start validates cfg (filling its defaults), starts every pool and returns once all
// their workers serve. If a pool cannot get there (for example its tools module does not
// import), Start stops everything and returns the reason.
func Start(ctx context.Context, cfg Config, opts ...Option) (_ *Runtime, err error) {
	o := options{logger: zerolog.Nop(), tracerProvider: otel.GetTracerProvider(), meterProvider: otel.GetMeterProvider(),
		propagator: otel.GetTextMapPropagator()}
	for _, opt := range opts {
		opt(&o)
	}
	shutdownTelemetry, err := o.telemetryFromEnv(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = shutdownTelemetry(context.Background())
		}
	}()
	if !tracing(o.tracerProvider) {
		// Nothing would record or carry a span: skip the instrumentation entirely.
		o.tracerProvider = tracenoop.NewTracerProvider()
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	callbacks, err := poolCallbacks(cfg, o.callbacks)
	if err != nil {
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	pythons, err := interpreters(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	cancel := context.CancelFunc(func() {})
	if cfg.StartTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, cfg.StartTimeout)
	}
	defer cancel()

	log := o.logger
	if cfg.Cluster.Enabled() && cfg.Cluster.Node != "" { // every line says which node wrote it
		log = log.With().Str(telemetry.LabelNode, cfg.Cluster.Node).Logger()
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		// protoactor's info lines (dead letters of late timer replies, restarts the
		// pool already reports) are noise here; its warnings and errors are kept.
		return telemetry.Slog(log.With().Str("component", "protoactor").Logger().Level(max(log.GetLevel(), zerolog.WarnLevel)))
	}))
	unwatch := actors.AnswerDeadLetters(system)
	var endpoint *telemetry.MetricsEndpoint
	spec := supervision.Spec{Strategy: supervision.OneForOne}
	if cfg.Metrics.Enabled {
		var labels []attribute.KeyValue
		if cfg.Cluster.Enabled() && cfg.Cluster.Node != "" {
			labels = append(labels, attribute.String(telemetry.LabelNode, cfg.Cluster.Node))
		}
		ep, err := telemetry.NewMetricsEndpoint(cfg.Metrics.Address, labels...)
		if err == nil {
			err = ep.Listen() // now, so a taken port is Start's error
		}
		if err != nil {
			system.Shutdown()
			return nil, fmt.Errorf("pyvisor: start: %w", err)
		}
		endpoint, o.meterProvider = ep, ep.Provider
		spec.Children = append(spec.Children, actors.EndpointChild(ep))
	}
	metrics, err := telemetry.NewMetrics(o.meterProvider)
	if err != nil {
		system.Shutdown()
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	arenas, err := poolArenas(cfg)
	if err != nil {
		system.Shutdown()
		closeEndpoint(endpoint)
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	ready, halt := make(chan error, len(cfg.Pools)), make(chan struct{})
	hosting := map[string][]bridge.Option{}
	for _, pc := range cfg.Pools {
		ps := poolSpec(pc, pythons[pc.Name], log, func(err error) { ready <- err })
		// What the runtime gives every process of the pool, beyond its configuration: an
		// Upgrade keeps it.
		host := []bridge.Option{bridge.WithSharedMemory(sharedMemory(pc.SharedMemory, arenas[pc.Name]))}
		ps.TracerProvider, ps.Propagator, ps.Metrics, ps.Halt = o.tracerProvider, o.propagator, metrics, halt
		if o.pythonSpans != nil {
			host = append(host, bridge.WithSpanSink(o.pythonSpans))
		}
		if cbs := callbacks[pc.Name]; len(cbs) > 0 {
			for name, fn := range cbs {
				host = append(host, bridge.WithCallback(name, fn))
			}
			host = append(host, bridge.WithCallbackObserver(callbackObserver(metrics, pc.Name)))
		}
		hosting[pc.Name] = host
		ps.Bridge = append(ps.Bridge, host...)
		spec.Children = append(spec.Children, actors.PoolChild(ps))
	}
	guardian, err := supervision.Start(ctx, system, spec, supervision.WithName("guardian"),
		supervision.WithEventHook(func(e supervision.Event) {
			if esc, ok := e.(*supervision.Escalated); ok {
				log.Error().Err(esc.Reason).Msg("pyvisor guardian gave up")
			}
		}))
	if err != nil {
		system.Shutdown()
		closeEndpoint(endpoint)
		releaseArenas(arenas)
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	done := make(chan struct{})
	rt := &Runtime{shutdownTelemetry: shutdownTelemetry, metrics: metrics, endpoint: endpoint, system: system, unwatch: unwatch, guardian: guardian,
		caller: actors.Caller{System: system, Propagator: o.propagator, Stopped: done}, done: done, hosting: hosting, halt: halt, over: make(chan struct{}), pools: map[string]*actor.PID{}, arenas: arenas, thresholds: map[string]int{}, cfg: cfg, log: log,
		tracer: o.tracerProvider.Tracer(instrumentation), prop: o.propagator}
	for _, pc := range cfg.Pools {
		rt.thresholds[pc.Name] = pc.SharedMemory.Threshold
	}
	rt.unobserve, _ = metrics.ObserveSharedMemory(rt.observeSharedMemory)
	children, err := guardian.WhichChildren(ctx)
	if err == nil {
		byID := map[string]*actor.PID{}
		for _, c := range children {
			byID[c.ID] = c.PID
		}
		for _, pc := range cfg.Pools {
			rt.pools[pc.Name] = byID[actors.PoolChildID(pc.Name)]
			rt.order = append(rt.order, pc.Name)
		}
	}
	for range cfg.Pools {
		if err != nil {
			break
		}
		select {
		case err = <-ready:
		case <-ctx.Done():
			err = fmt.Errorf("waiting for workers: %w%s", ctx.Err(), rt.notReady())
		}
	}
	if err == nil && cfg.Cluster.Enabled() {
		err = rt.startNode(ctx, o)
	}
	if err == nil {
		err = rt.watchPools()
	}
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), cfg.StopTimeout)
		defer cancel()
		_ = rt.Stop(stopCtx)
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	return rt, nil
}

// notReady says which pools were not ready when Start gave up, and what their workers
// were doing: ctx ended while a model loaded is another fix than a worker that failed.
func (rt *Runtime) notReady() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stats, err := rt.Stats(ctx)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, st := range stats {
		if st.State == actors.StateRunning {
			continue
		}
		states := map[string]int{}
		for _, w := range st.Workers {
			states[w.State]++
		}
		fmt.Fprintf(&b, "\n  pool %s: %s, workers %d ready, %d loading their tools, %d down", st.Pool, st.State, states["ready"], states["loading"], states["down"])
		if states["loading"] > 0 {
			b.WriteString(" (a slow import, such as a model's load: give Start a longer context; the pool's load_timeout bounds each worker's load)")
		}
	}
	return b.String()
}

// interpreters is the Python of each pool of cfg, by name: every missing environment is
// reported at once.
func interpreters(ctx context.Context, cfg Config) (map[string]string, error) {
	pythons := make(map[string]string, len(cfg.Pools))
	var errs []error
	for _, pc := range cfg.Pools {
		py, err := cfg.Interpreter(ctx, pc)
		if err != nil {
			errs = append(errs, err)
		}
		pythons[pc.Name] = py
	}
	return pythons, errors.Join(errs...)
}

func poolSpec(pc PoolConfig, python string, log zerolog.Logger, onReady func(error)) actors.PoolSpec {
	b := []bridge.Option{
		bridge.WithPython(python),
		bridge.WithTools(pc.Tools...),
		bridge.WithHandshakeTimeout(pc.HandshakeTimeout),
		bridge.WithLoadTimeout(pc.LoadTimeout),
		bridge.WithStopTimeout(pc.StopTimeout),
		bridge.WithMaxMessageBytes(pc.MaxMessageBytes),
	}
	if pc.Dir != "" {
		b = append(b, bridge.WithDir(pc.Dir))
	}
	for k, v := range pc.Env {
		b = append(b, bridge.WithEnv(k, v))
	}
	spec := actors.PoolSpec{
		Name:           pc.Name,
		Workers:        pc.Workers,
		StartupBatch:   pc.StartupBatch,
		MaxConcurrent:  pc.MaxConcurrent,
		QueueSize:      max(pc.QueueSize, 0),
		QueueTimeout:   pc.QueueTimeout,
		StrictAffinity: pc.Affinity == AffinityStrict,
		StopTimeout:    pc.StopTimeout,
		CancelGrace:    pc.CancelGrace,
		Bridge:         b,
		SlotEnv:        slotEnv(pc),
		Heartbeat: actors.HeartbeatSpec{
			Enabled:      pc.Heartbeat.Enabled,
			Trace:        pc.Heartbeat.Trace,
			Interval:     pc.Heartbeat.Interval,
			Timeout:      pc.Heartbeat.Timeout,
			MaxMissed:    pc.Heartbeat.MaxMissed,
			InitialDelay: pc.Heartbeat.InitialDelay,
		},
		MaxRestarts: pc.Restart.MaxRestarts,
		Within:      pc.Restart.Within,
		Recycle: actors.RecycleSpec{
			MaxCalls:    uint64(pc.Recycle.MaxCalls),
			MaxAge:      pc.Recycle.MaxAge,
			MaxRSSBytes: pc.Recycle.MaxRSSBytes,
			MaxGPUBytes: pc.Recycle.MaxGPUBytes,
		},
		Sessions:    actors.SessionSpec{IdleTimeout: pc.Sessions.IdleTimeout, Max: pc.Sessions.Max},
		MemoryLimit: pc.MemoryLimit,
		Upgrade: actors.UpgradeSpec{
			WarmUpTool:      pc.Upgrade.WarmUpTool,
			WarmUpArgs:      []byte(pc.Upgrade.WarmUpArgs),
			WarmUpTimeout:   pc.Upgrade.WarmUpTimeout,
			DrainTimeout:    pc.Upgrade.DrainTimeout,
			Canary:          pc.Upgrade.Canary,
			MaxFailureRatio: pc.Upgrade.MaxFailureRatio,
			SessionDeadline: pc.Upgrade.SessionDeadline,
			MaxSurge:        pc.Upgrade.MaxSurge,
		},
		Logger:  log,
		OnReady: onReady,
	}
	if pc.Restart.Backoff.Initial > 0 {
		spec.Backoff = &supervision.Backoff{Base: pc.Restart.Backoff.Initial, Max: pc.Restart.Backoff.Max, Multiplier: pc.Restart.Backoff.Multiplier}
	}
	return spec
}

// instrumentation names the runtime's tracer.
const instrumentation = "github.com/pyvisor/pyvisor"

// PoolStats is a snapshot of one pool.
type PoolStats = messages.PoolStats

// WorkerStats is a snapshot of one worker slot, within PoolStats.
type WorkerStats = messages.WorkerStats

// Stats returns a snapshot of every pool, in configuration order: this node's pools
// only, in a cluster.
func (r *Runtime) Stats(ctx context.Context) ([]PoolStats, error) {
	if r.stopped.Load() {
		return nil, fmt.Errorf("pyvisor: stats: %w", ErrStopped)
	}
	out := make([]PoolStats, 0, len(r.order))
	for _, name := range r.order {
		reply, err := r.request(ctx, r.pools[name], &messages.GetStats{})
		if err != nil {
			return nil, fmt.Errorf("pyvisor: stats of pool %s: %w", name, err)
		}
		st, ok := reply.(*messages.PoolStats)
		if !ok {
			return nil, fmt.Errorf("pyvisor: stats of pool %s: unexpected reply %T", name, reply)
		}
		out = append(out, *st)
	}
	return out, nil
}

// Resize makes pool run n workers: new ones start after the existing ones; the last
// ones stop first (gracefully). In a cluster, it resizes this node's pool of the name
// only (ErrUnknownPool if this node runs none).
func (r *Runtime) Resize(ctx context.Context, pool string, n int) error {
	return r.command(ctx, pool, "resize "+pool, &messages.Resize{Workers: n})
}

// Reload rolls the pool's tool code, as it is on disk now, through its workers, one at
// a time: each new worker loads (and answers the pool's upgrade.warm_up_tool) before it
// takes a call, each old one finishes its calls, and the pool never has fewer ready
// workers than it had. It returns once every worker runs the new code, or with an error
// matching ErrRolledBack and carrying the cause (a traceback for code that does not
// import) once the old code serves again: no call fails because of a rejected version.
// A second Reload, or a Resize, while one runs is refused with ErrUpgrading. If ctx ends
// first, Reload returns ctx's error and the upgrade goes on (Stats' Upgrading).
// See docs/upgrades.md.
func (r *Runtime) Reload(ctx context.Context, pool string) error {
	return r.ReloadAs(ctx, pool, "")
}

// ReloadAs is Reload with version, a label of the new code (a release, a commit), as the
// workers' Version instead of the hash of their tools modules' files.
func (r *Runtime) ReloadAs(ctx context.Context, pool, version string) error {
	return r.command(ctx, pool, "reload "+pool, &actors.Upgrade{Version: version})
}

// CloseSession ends session id in pool: its state is dropped from the worker that holds it,
// and a later call with the id starts a new session. It is ErrUnknownSession when the pool
// holds no such session. A session pinned to its old code during an upgrade
// (upgrade.session_deadline) ends there, and the old process goes once none is left.
func (r *Runtime) CloseSession(ctx context.Context, pool, id string) error {
	return r.command(ctx, pool, "close session "+id, &actors.CloseSession{ID: id})
}

// Upgrade rolls a pool to a new configuration of its Python side the way Reload rolls new
// code: pc names the pool, and its Tools, Dir, Python, Requirements (an environment built
// by `pyvisor setup -config`), Env, HandshakeTimeout, LoadTimeout, StopTimeout and
// MaxMessageBytes apply to the new processes, and to every later one once Upgrade
// returns nil. A new dependency set and new code roll together; a failure rolls back as
// Reload's does, and the old configuration serves on. Its other fields (the number of
// workers, the queue, heartbeats, slots) are not changed: Resize changes the size.
// Relative paths in pc are taken from the runtime's Config.Dir; for a pool of another
// configuration file, pass it with its paths placed (LoadConfig, then WithDefaults).
func (r *Runtime) Upgrade(ctx context.Context, pc PoolConfig) error {
	if _, ok := r.pools[pc.Name]; !ok {
		return r.unknownPool(pc.Name)
	}
	cfg := r.cfg
	cfg.Pools = []PoolConfig{pc}
	cfg.Cluster = ClusterConfig{}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("pyvisor: upgrade %s: %w", pc.Name, err)
	}
	pc = cfg.Pools[0]
	python, err := cfg.Interpreter(ctx, pc)
	if err != nil {
		return fmt.Errorf("pyvisor: upgrade %s: %w", pc.Name, err)
	}
	opts := append(poolSpec(pc, python, r.log, nil).Bridge, r.hosting[pc.Name]...)
	return r.command(ctx, pc.Name, "upgrade "+pc.Name, &actors.Upgrade{Bridge: opts})
}

// command asks pool to do msg (what names it in errors) and returns the error of the pool's
// *messages.Ack: an unknown pool and a stopped runtime are said at once.
func (r *Runtime) command(ctx context.Context, pool, what string, msg any) error {
	pid, ok := r.pools[pool]
	if !ok {
		return r.unknownPool(pool)
	}
	if r.stopped.Load() {
		return fmt.Errorf("pyvisor: %s: %w", what, ErrStopped)
	}
	reply, err := r.request(ctx, pid, msg)
	if err != nil {
		return fmt.Errorf("pyvisor: %s: %w", what, err)
	}
	if ack, ok := reply.(*messages.Ack); ok && ack.Err != nil {
		return fmt.Errorf("pyvisor: %w", ack.Err)
	}
	return nil
}

// request asks a pool something; one that is gone, or stops before it answers, is
// ErrStopped (actors.ErrNoActor matches it).
func (r *Runtime) request(ctx context.Context, pid *actor.PID, msg any) (any, error) {
	return actors.Request(ctx, r.system, r.prop, r.done, pid, msg)
}

// MetricsAddress is where the metrics endpoint listens (host:port, path /metrics), or
// "" when metrics are off.
func (r *Runtime) MetricsAddress() string {
	if r.endpoint == nil {
		return ""
	}
	return r.endpoint.Addr()
}

func closeEndpoint(ep *telemetry.MetricsEndpoint) {
	if ep == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ep.Close(ctx)
	_ = ep.Provider.Shutdown(ctx)
}

// Stop stops taking calls, fails queued ones with ErrStopped, lets in-flight ones
// finish (within ctx's deadline, or the configured stop timeout), then stops every
// worker in reverse start order and the actor system. No Python process is left.
//
// Once ctx ends (or the stop timeout passes), workers still stopping are killed, not
// given their pool's stop timeout: Stop then returns ctx's error as soon as their
// processes are reaped. A ctx that has ended already kills them at once, without a
// graceful stop. Stop may be called more than once, and concurrently: a call that
// finds a stop under way waits for it (its own ctx ending kills the workers too), and
// returns that stop's error.
func (r *Runtime) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StopTimeout)
	defer cancel()
	// Once ctx ends, workers still stopping are killed, not waited for.
	defer context.AfterFunc(ctx, func() { r.haltOnce.Do(func() { close(r.halt) }) })()
	if !r.stopped.Swap(true) {
		r.stopErr = r.stop(ctx)
		close(r.over)
		return r.stopErr
	}
	select {
	case <-r.over:
		return r.stopErr
	case <-ctx.Done():
		return fmt.Errorf("pyvisor: stop: %w", ctx.Err())
	}
}

// stop is the one run of Stop's work.
func (r *Runtime) stop(ctx context.Context) error {
	deadline, _ := ctx.Deadline()
	// In-flight calls may use what is left after the workers' own stop budget.
	budget := time.Second
	for _, pc := range r.cfg.Pools {
		budget = max(budget, pc.StopTimeout+2*time.Second)
	}
	drain := deadline.Add(-budget)
	r.unwatchPools() // first: no reload starts while the pools stop
	var leaveErr error
	if r.node != nil { // first: the other nodes stop sending calls here, and get them elsewhere
		leaveErr = r.node.Stop(ctx, drain)
	}
	for i := len(r.order) - 1; i >= 0; i-- {
		_, _ = actors.Request(ctx, r.system, r.prop, r.done, r.pools[r.order[i]], &messages.Drain{Deadline: drain})
	}
	err := r.guardian.Stop(ctx)
	close(r.done) // calls still waiting for a pool end now
	r.system.Shutdown()
	r.unwatch()
	closeEndpoint(r.endpoint)
	if r.unobserve != nil {
		_ = r.unobserve()
	}
	releaseArenas(r.arenas) // Buffers and result views still held keep theirs mapped
	telemetryErr := r.shutdownTelemetry(ctx)
	if err = errors.Join(leaveErr, err, telemetryErr); err != nil {
		return fmt.Errorf("pyvisor: stop: %w", err)
	}
	return nil
}
