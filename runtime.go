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
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/telemetry"
)

// Runtime is a running set of pools. It is safe for concurrent use.
type Runtime struct {
	attrs    sync.Map // callKey -> metric.MeasurementOption
	metrics  *telemetry.Metrics
	endpoint *telemetry.MetricsEndpoint // nil unless cfg.Metrics.Enabled
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	system   *actor.ActorSystem
	guardian *supervision.Handle
	pools    map[string]*actor.PID
	order    []string
	cfg      Config
	log      zerolog.Logger
}

// Option configures Start.
type Option func(*options)

type options struct {
	logger         zerolog.Logger
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
	pythonSpans    func(json.RawMessage)
}

// WithMeterProvider records the runtime's metrics with mp (default: the OpenTelemetry
// global, a no-op unless installed). With Config.Metrics.Enabled the runtime serves
// its own Prometheus endpoint instead, and mp is not used.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// tracing reports whether tp makes spans that carry a trace (an SDK provider, sampled
// or not); the OpenTelemetry global with no SDK installed does not. Decided at Start.
func tracing(tp trace.TracerProvider) bool {
	_, span := tp.Tracer(instrumentation).Start(context.Background(), "probe")
	defer span.End()
	return span.SpanContext().IsValid()
}

// WithLogger receives the runtime's log lines, the Python workers' forwarded ones and
// protoactor's (default zerolog.Nop()).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTracerProvider sets where the runtime's spans go (default: the OpenTelemetry
// global, a no-op unless the program installed one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithPropagator sets how trace context and baggage travel between actors and into
// Python (default: the OpenTelemetry global; install W3C trace context and baggage,
// as telemetry.Setup does).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.propagator = p }
}

// WithPythonSpans has every worker write the spans it ends as JSON lines on stderr and
// hands each to sink (the demo prints Go and Python spans as one tree from them).
func WithPythonSpans(sink func(json.RawMessage)) Option {
	return func(o *options) { o.pythonSpans = sink }
}

// Start validates cfg (filling its defaults), starts every pool and returns once all
// their workers serve. If a pool cannot get there (for example its tools module does not
// import), Start stops everything and returns the reason.
func Start(ctx context.Context, cfg Config, opts ...Option) (*Runtime, error) {
	o := options{logger: zerolog.Nop(), tracerProvider: otel.GetTracerProvider(), meterProvider: otel.GetMeterProvider(),
		propagator: otel.GetTextMapPropagator()}
	for _, opt := range opts {
		opt(&o)
	}
	if !tracing(o.tracerProvider) {
		// Nothing would record or carry a span: skip the instrumentation entirely.
		o.tracerProvider = tracenoop.NewTracerProvider()
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	log := o.logger
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		// protoactor's info lines (dead letters of late timer replies, restarts the
		// pool already reports) are noise here; its warnings and errors are kept.
		return telemetry.Slog(log.With().Str("component", "protoactor").Logger().Level(max(log.GetLevel(), zerolog.WarnLevel)))
	}))
	var endpoint *telemetry.MetricsEndpoint
	spec := supervision.Spec{Strategy: supervision.OneForOne}
	if cfg.Metrics.Enabled {
		ep, err := telemetry.NewMetricsEndpoint(cfg.Metrics.Address)
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
	ready := make(chan error, len(cfg.Pools))
	for _, pc := range cfg.Pools {
		ps := poolSpec(cfg, pc, log, func(err error) { ready <- err })
		ps.TracerProvider, ps.Propagator, ps.Metrics = o.tracerProvider, o.propagator, metrics
		if o.pythonSpans != nil {
			ps.Bridge = append(ps.Bridge, bridge.WithSpanSink(o.pythonSpans))
		}
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
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	rt := &Runtime{metrics: metrics, endpoint: endpoint, system: system, guardian: guardian, pools: map[string]*actor.PID{}, cfg: cfg, log: log,
		tracer: o.tracerProvider.Tracer(instrumentation), prop: o.propagator}
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
			err = fmt.Errorf("waiting for workers: %w", ctx.Err())
		}
	}
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), cfg.StopTimeout)
		defer cancel()
		_ = rt.Stop(stopCtx)
		return nil, fmt.Errorf("pyvisor: start: %w", err)
	}
	return rt, nil
}

func poolSpec(cfg Config, pc PoolConfig, log zerolog.Logger, onReady func(error)) actors.PoolSpec {
	b := []bridge.Option{
		bridge.WithTools(pc.Tools...),
		bridge.WithHandshakeTimeout(pc.HandshakeTimeout),
		bridge.WithStopTimeout(pc.StopTimeout),
		bridge.WithMaxMessageBytes(pc.MaxMessageBytes),
	}
	if cfg.Python != "" {
		b = append(b, bridge.WithPython(cfg.Python))
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
		Bridge:         b,
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

// Result is what a tool returned.
type Result = bridge.Result

// ToolError is a Python exception raised by a tool, with its traceback.
type ToolError = bridge.ToolError

// Errors a call can end with, besides *ToolError and the context's errors. Match them
// with errors.Is.
var (
	ErrUnknownPool     = errors.New("unknown pool")
	ErrPoolSaturated   = actors.ErrPoolSaturated
	ErrQueueTimeout    = actors.ErrQueueTimeout
	ErrStopped         = actors.ErrStopped
	ErrPoolFailed      = actors.ErrPoolFailed
	ErrUnknownTool     = bridge.ErrUnknownTool
	ErrInvalidArgument = bridge.ErrInvalidArgument
	ErrWorkerCrashed   = bridge.ErrWorkerCrashed
	ErrMessageTooLarge = bridge.ErrMessageTooLarge
)

// CallOption adds to one call.
type CallOption func(*messages.Call)

// WithSession runs the call in a session: it goes to the worker holding the session's
// state (see PoolConfig.Affinity).
func WithSession(id string) CallOption { return func(c *messages.Call) { c.SessionID = id } }

// WithPayload sends raw bytes along, the tool's ctx.payload.
func WithPayload(b []byte) CallOption { return func(c *messages.Call) { c.Payload = b } }

// WithMetadata adds string metadata, the tool's ctx.metadata.
func WithMetadata(md map[string]string) CallOption {
	return func(c *messages.Call) { c.Metadata = md }
}

// Idempotent marks a call safe to run twice: if its worker dies mid-call, it is retried
// once on another worker.
func Idempotent() CallOption { return func(c *messages.Call) { c.Idempotent = true } }

func (r *Runtime) call(ctx context.Context, pool, tool string, args any, opts []CallOption) (context.Context, *actor.PID, messages.Call, error) {
	pid, ok := r.pools[pool]
	if !ok {
		return ctx, nil, messages.Call{}, fmt.Errorf("pyvisor: %w %q", ErrUnknownPool, pool)
	}
	if telemetry.CorrelationID(ctx) == "" {
		ctx = telemetry.WithCorrelationID(ctx, telemetry.NewCorrelationID())
	}
	ctx = telemetry.WithCorrelationBaggage(ctx)
	call := messages.Call{Tool: tool}
	switch a := args.(type) {
	case nil:
	case json.RawMessage:
		call.Args = a
	default:
		b, err := json.Marshal(a)
		if err != nil {
			return ctx, nil, call, fmt.Errorf("pyvisor: execute %s: %w: %w", tool, ErrInvalidArgument, err)
		}
		call.Args = b
	}
	for _, o := range opts {
		o(&call)
	}
	return ctx, pid, call, nil
}

// Execute runs tool in pool with args (JSON-encoded; a json.RawMessage is sent as it
// is). ctx's deadline and cancellation reach the Python call. The call's correlation id
// is ctx's (telemetry.WithCorrelationID), or a new one.
func (r *Runtime) Execute(ctx context.Context, pool, tool string, args any, opts ...CallOption) (Result, error) {
	ctx, pid, call, err := r.call(ctx, pool, tool, args, opts)
	if err != nil {
		return Result{}, err
	}
	ctx, span := r.startCall(ctx, "execute", pool, call)
	defer span.End()
	began := time.Now()
	reply, err := actors.Request(ctx, r.system, r.prop, pid, &messages.Execute{Ctx: ctx, Call: call})
	defer func() { r.recordCall(ctx, pool, tool, began, err) }()
	if err == nil {
		res, ok := reply.(*messages.ExecuteResult)
		if !ok {
			err = fmt.Errorf("unexpected reply %T", reply)
		} else if res.Err == nil {
			span.SetAttributes(attribute.String("pyvisor.worker", res.Worker))
			return Result{JSON: res.JSON, Payload: res.Payload}, nil
		} else {
			span.SetAttributes(attribute.String("pyvisor.worker", res.Worker))
			err = res.Err
		}
	}
	err = r.callFailed(ctx, span, "execute", tool, err)
	return Result{}, err
}

// recordCall counts a call and records its duration (with the call's trace as the
// exemplar when it is sampled).
func (r *Runtime) recordCall(ctx context.Context, pool, tool string, began time.Time, err error) {
	o := outcome(err)
	if o == "unknown_tool" {
		tool = "_unknown" // callers choose tool names: keep the label bounded
	}
	attrs := r.callAttrs(pool, tool, o)
	r.metrics.Calls.Add(ctx, 1, attrs)
	r.metrics.CallDuration.Record(ctx, time.Since(began).Seconds(), attrs)
}

// callAttrs returns the label set of calls of (pool, tool, outcome), built once: the
// set is sorted and hashed on creation, too costly to redo on every call.
func (r *Runtime) callAttrs(pool, tool, outcome string) metric.MeasurementOption {
	key := callKey{pool, tool, outcome}
	if a, ok := r.attrs.Load(key); ok {
		return a.(metric.MeasurementOption)
	}
	a := metric.WithAttributeSet(attribute.NewSet(
		attribute.String(telemetry.LabelPool, pool),
		attribute.String(telemetry.LabelTool, tool),
		attribute.String(telemetry.LabelOutcome, outcome),
	))
	r.attrs.Store(key, a)
	return a
}

type callKey struct{ pool, tool, outcome string }

// outcome is the outcome label of a call's error.
func outcome(err error) string {
	var toolErr *ToolError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &toolErr):
		return "tool_error"
	case errors.Is(err, ErrUnknownTool):
		return "unknown_tool"
	case errors.Is(err, ErrInvalidArgument):
		return "invalid_argument"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, ErrWorkerCrashed):
		return "worker_crashed"
	case errors.Is(err, ErrPoolSaturated):
		return "pool_saturated"
	case errors.Is(err, ErrQueueTimeout):
		return "queue_timeout"
	case errors.Is(err, ErrStopped):
		return "stopped"
	case errors.Is(err, ErrPoolFailed):
		return "pool_failed"
	case errors.Is(err, ErrMessageTooLarge):
		return "too_large"
	}
	return "error"
}

// startCall opens the API span of a call: the root of its trace on pyvisor's side.
func (r *Runtime) startCall(ctx context.Context, op, pool string, call messages.Call) (context.Context, trace.Span) {
	ctx, span := r.tracer.Start(ctx, op+" "+call.Tool, trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() { // attributes cost allocations: only for spans that are kept
		span.SetAttributes(
			attribute.String("pyvisor.pool", pool),
			attribute.String("pyvisor.tool", call.Tool),
			attribute.String("pyvisor.correlation_id", telemetry.CorrelationID(ctx)),
		)
		if call.SessionID != "" {
			span.SetAttributes(attribute.String("pyvisor.session_id", call.SessionID))
		}
	}
	return ctx, span
}

// callFailed records a call's error on its span and in the log (at debug: the caller
// has the error), and returns it with the call's correlation id.
func (r *Runtime) callFailed(ctx context.Context, span trace.Span, op, tool string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = ctxErr
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	log := telemetry.CallLogger(ctx, r.log)
	log.Debug().Err(err).Str("tool", tool).Msg(op + " failed")
	return fmt.Errorf("pyvisor: %s %s (correlation id %s): %w", op, tool, telemetry.CorrelationID(ctx), err)
}

// Stream runs a streaming tool and yields its chunks in order; the sequence ends after
// the last chunk or with one error. Stopping early cancels the call, which closes the
// Python generator.
func (r *Runtime) Stream(ctx context.Context, pool, tool string, args any, opts ...CallOption) iter.Seq2[Result, error] {
	return func(yield func(Result, error) bool) {
		ctx, pid, call, err := r.call(ctx, pool, tool, args, opts)
		if err != nil {
			yield(Result{}, err)
			return
		}
		ctx, span := r.startCall(ctx, "stream", pool, call)
		defer span.End()
		began := time.Now()
		var failed error
		defer func() { r.recordCall(ctx, pool, tool, began, failed) }()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		chunks := make(chan messages.StreamChunk, 16)
		actors.Send(ctx, r.system, r.prop, pid, &messages.ExecuteStream{Ctx: ctx, Call: call, Chunks: chunks})
		n := 0
		for {
			select {
			case c := <-chunks:
				switch {
				case c.Err != nil:
					failed = r.callFailed(ctx, span, "stream", tool, c.Err)
					yield(Result{}, failed)
					return
				case c.Done:
					span.SetAttributes(attribute.Int("pyvisor.stream.chunks", n))
					return
				}
				n++
				span.AddEvent("chunk", trace.WithAttributes(attribute.Int("index", n-1)))
				if !yield(Result{JSON: c.JSON, Payload: c.Payload}, nil) {
					span.SetAttributes(attribute.Int("pyvisor.stream.chunks", n), attribute.Bool("pyvisor.stream.abandoned", true))
					return
				}
			case <-ctx.Done():
				failed = r.callFailed(ctx, span, "stream", tool, ctx.Err())
				yield(Result{}, failed)
				return
			}
		}
	}
}

// PoolStats is a snapshot of one pool.
type PoolStats = messages.PoolStats

// Stats returns a snapshot of every pool, in configuration order.
func (r *Runtime) Stats(ctx context.Context) ([]PoolStats, error) {
	out := make([]PoolStats, 0, len(r.order))
	for _, name := range r.order {
		reply, err := actors.Request(ctx, r.system, r.prop, r.pools[name], &messages.GetStats{})
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
// ones stop first (gracefully).
func (r *Runtime) Resize(ctx context.Context, pool string, n int) error {
	pid, ok := r.pools[pool]
	if !ok {
		return fmt.Errorf("pyvisor: %w %q", ErrUnknownPool, pool)
	}
	reply, err := actors.Request(ctx, r.system, r.prop, pid, &messages.Resize{Workers: n})
	if err != nil {
		return fmt.Errorf("pyvisor: resize %s: %w", pool, err)
	}
	if ack, ok := reply.(*messages.Ack); ok && ack.Err != nil {
		return ack.Err
	}
	return nil
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
func (r *Runtime) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StopTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	drain := deadline.Add(-time.Duration(len(r.pools)) * time.Second)
	for i := len(r.order) - 1; i >= 0; i-- {
		_, _ = actors.Request(ctx, r.system, r.prop, r.pools[r.order[i]], &messages.Drain{Deadline: drain})
	}
	err := r.guardian.Stop(ctx)
	r.system.Shutdown()
	closeEndpoint(r.endpoint)
	if err != nil {
		return fmt.Errorf("pyvisor: stop: %w", err)
	}
	return nil
}
