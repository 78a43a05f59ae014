package pyvisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/nd"
	"github.com/pyvisor/pyvisor/telemetry"
)

// CallOption adds to one call.
type CallOption func(*callOptions)

type callOptions struct {
	call *messages.Call
	ran  *Ran
}

// WithSession runs the call in a session: it goes to the worker holding the session's
// state (see PoolConfig.Affinity); in a cluster, to the node holding it.
func WithSession(id string) CallOption { return func(c *callOptions) { c.call.SessionID = id } }

// WithPayload sends raw bytes along, the tool's ctx.payload.
func WithPayload(b []byte) CallOption { return func(c *callOptions) { c.call.Payload = b } }

// WithMetadata adds string metadata, the tool's ctx.metadata.
func WithMetadata(md map[string]string) CallOption {
	return func(c *callOptions) { c.call.Metadata = md }
}

// Idempotent marks a call safe to run twice: if its worker dies mid-call, it is retried
// once on another worker; in a cluster, if its node is lost mid-call, once on another
// node.
func Idempotent() CallOption { return func(c *callOptions) { c.call.Idempotent = true } }

// Ran is where an Execute ran, as WithRan reports it.
type Ran struct {
	Node   string // the cluster node ("" without a cluster)
	Worker string // the worker slot, e.g. "default-1"
}

// WithRan has Execute fill in *ran with where the call ran, once it has (left zero
// when no worker ran it).
func WithRan(ran *Ran) CallOption { return func(c *callOptions) { c.ran = ran } }

func (r *Runtime) call(ctx context.Context, pool, tool string, args any, opts []CallOption) (context.Context, *actor.PID, messages.Call, error) {
	ctx, pid, call, _, err := r.prepare(ctx, pool, tool, args, opts)
	return ctx, pid, call, err
}

// prepare checks and builds a call, and says where to report where it ran.
func (r *Runtime) prepare(ctx context.Context, pool, tool string, args any, opts []CallOption) (context.Context, *actor.PID, messages.Call, *Ran, error) {
	if err := toolName(tool); err != nil {
		return ctx, nil, messages.Call{}, nil, fmt.Errorf("pyvisor: execute: %w", err) // not echoed: it may be anything
	}
	if r.stopped.Load() {
		return ctx, nil, messages.Call{}, nil, fmt.Errorf("pyvisor: %s: %w", tool, ErrStopped)
	}
	pid, ok := r.pools[pool]
	if !ok && r.node == nil {
		return ctx, nil, messages.Call{}, nil, r.unknownPool(pool)
	}
	if telemetry.CorrelationID(ctx) == "" {
		ctx = telemetry.WithCorrelationID(ctx, telemetry.NewCorrelationID())
	}
	call := messages.Call{Tool: tool}
	switch a := args.(type) {
	case nil:
	case json.RawMessage:
		call.Args = a
	default:
		b, err := json.Marshal(a)
		if err != nil {
			return ctx, nil, call, nil, fmt.Errorf("pyvisor: execute %s: %w: %w", tool, ErrInvalidArgument, err)
		}
		if err := hiddenFields(a, b); err != nil {
			return ctx, nil, call, nil, fmt.Errorf("pyvisor: execute %s: %w: %w", tool, ErrInvalidArgument, err)
		}
		call.Args = b
	}
	co := callOptions{call: &call}
	for _, o := range opts {
		o(&co)
	}
	if err := validate(telemetry.CorrelationID(ctx), call); err != nil {
		return ctx, nil, call, nil, fmt.Errorf("pyvisor: execute %s: %w", tool, err)
	}
	return ctx, pid, call, co.ran, nil
}

// Execute runs tool in pool with args (JSON-encoded; a json.RawMessage is sent as it
// is). ctx's deadline and cancellation reach the Python call. The call's correlation id
// is ctx's (telemetry.WithCorrelationID), or a new one.
func (r *Runtime) Execute(ctx context.Context, pool, tool string, args any, opts ...CallOption) (Result, error) {
	ctx, pid, call, ran, err := r.prepare(ctx, pool, tool, args, opts)
	if err != nil {
		return Result{}, err
	}
	unhold, err := hold(tool, call)
	if err != nil {
		return Result{}, err
	}
	defer unhold()
	ctx, span := r.startCall(ctx, "execute", pool, call)
	defer span.End()
	began := time.Now()
	var res *messages.ExecuteResult
	remote := r.remoteCall(pool)
	r.recordPayload(ctx, span, pool, "in", payloadSize(call), remote)
	if remote {
		res = &messages.ExecuteResult{}
		var out bridge.Result
		out, res.Worker, res.Err = r.node.Execute(ctx, pool, inMessage(call))
		res.JSON, res.Payload, res.Arrays, res.Release = out.JSON, out.Payload, out.Arrays, out.Release
	} else {
		res, err = r.caller.Execute(ctx, pid, &messages.Execute{Ctx: ctx, Call: call})
	}
	defer func() { r.recordCall(ctx, pool, tool, began, err) }()
	if err == nil {
		if res.Worker != "" && span.IsRecording() {
			span.SetAttributes(attribute.String("pyvisor.worker", res.Worker))
			if res.Version != "" {
				span.SetAttributes(attribute.String("pyvisor.pool.version", res.Version))
			}
		}
		if ran != nil && res.Worker != "" {
			*ran = Ran{Node: r.Node(), Worker: res.Worker}
			if node, worker, remote := strings.Cut(res.Worker, "/"); remote {
				*ran = Ran{Node: node, Worker: worker}
			}
		}
		if res.Err == nil {
			r.recordPayload(ctx, span, pool, "out", len(res.Payload)+arraysSize(res.Arrays), remote)
			return bridge.NewResult(res.JSON, res.Payload, res.Arrays, res.Release), nil
		}
		err = res.Err
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
	if err == nil {
		return "ok" // before toolErr, which escapes: no allocation for a call that succeeded
	}
	var toolErr *ToolError
	switch {
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
	case errors.Is(err, ErrPoolFailed): // before crashed: it wraps the last worker failure
		return "pool_failed"
	case errors.Is(err, ErrStopped):
		return "stopped"
	case errors.Is(err, ErrWorkerCrashed):
		return "worker_crashed"
	case errors.Is(err, ErrPoolSaturated):
		return "pool_saturated"
	case errors.Is(err, ErrQueueTimeout):
		return "queue_timeout"
	case errors.Is(err, ErrMessageTooLarge):
		return "too_large"
	case errors.Is(err, ErrProtocolViolation):
		return "protocol_violation"
	case errors.Is(err, ErrNodeLost):
		return "node_lost"
	case errors.Is(err, ErrDraining):
		return "draining"
	case errors.Is(err, ErrUnknownPool):
		return "unknown_pool"
	}
	return "error"
}

// internalSpan is the API span's kind, as an option made once.
var internalSpan = trace.WithSpanKind(trace.SpanKindInternal)

// startCall opens the API span of a call: the root of its trace on pyvisor's side.
func (r *Runtime) startCall(ctx context.Context, op, pool string, call messages.Call) (context.Context, trace.Span) {
	ctx, span := r.tracer.Start(ctx, op+" "+call.Tool, internalSpan)
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
// has the error), and returns it with the call's correlation id. A call whose worker
// the runtime stopped under it (Stop, a worker removed by Resize, a pool that gave up
// stopping its workers) is ErrStopped.
func (r *Runtime) callFailed(ctx context.Context, span trace.Span, op, tool string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = ctxErr
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	log := telemetry.CallLogger(ctx, r.log)
	log.Debug().Err(err).Str("tool", tool).Msg(op + " failed")
	head := fmt.Sprintf("pyvisor: %s %s (correlation id %s): ", op, tool, telemetry.CorrelationID(ctx))
	// The bridge's errors name the call too ("execute add: ..."): said once.
	msg := strings.TrimPrefix(err.Error(), op+" "+tool+": ")
	return &callError{msg: head + msg, err: err}
}

// callError is a call's error as the API returns it: its text says the call once, and
// errors.Is and errors.As see what it wraps.
type callError struct {
	msg string
	err error
}

func (e *callError) Error() string { return e.msg }
func (e *callError) Unwrap() error { return e.err }

// Stream runs a streaming tool and yields its chunks in order; the sequence ends after
// the last chunk or with one error. Stopping early cancels the call, which closes the
// Python generator.
func (r *Runtime) Stream(ctx context.Context, pool, tool string, args any, opts ...CallOption) iter.Seq2[Result, error] {
	return func(yield func(Result, error) bool) {
		ctx, pid, call, err := r.call(ctx, pool, tool, args, opts)
		if err == nil {
			var unhold func()
			if unhold, err = hold(tool, call); err == nil {
				defer unhold()
			}
		}
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
		n := 0
		chunks := r.caller.Stream(ctx, pid, &messages.ExecuteStream{Ctx: ctx, Call: call})
		remote := r.remoteCall(pool)
		r.recordPayload(ctx, span, pool, "in", payloadSize(call), remote)
		out := 0
		defer func() { r.recordPayload(ctx, span, pool, "out", out, remote) }()
		if remote {
			chunks = r.node.Stream(ctx, pool, inMessage(call))
		}
		for res, err := range chunks {
			if err != nil {
				failed = r.callFailed(ctx, span, "stream", tool, err)
				yield(Result{}, failed)
				return
			}
			n++
			out += len(res.Payload) + arraysSize(res.Arrays)
			span.AddEvent("chunk", trace.WithAttributes(attribute.Int("index", n-1)))
			if !yield(Result(res), nil) {
				span.SetAttributes(attribute.Int("pyvisor.stream.chunks", n), attribute.Bool("pyvisor.stream.abandoned", true))
				return
			}
		}
		span.SetAttributes(attribute.Int("pyvisor.stream.chunks", n))
	}
}

// inMessage is a call through the cluster: the bytes of a Buffer and of arrays in
// buffers travel in the message (copied, since the call may outlive the caller's hold on
// them), and results come back as copies (a node's message carries no view).
func inMessage(call messages.Call) messages.Call {
	if call.Buffer != nil {
		call.Payload, call.Buffer = bytes.Clone(call.Buffer.Bytes()), nil
	}
	if len(call.Arrays) > 0 {
		arrays := make(map[string]nd.Array, len(call.Arrays))
		for name, a := range call.Arrays {
			if a.Owner != nil {
				a.Data, a.Owner = bytes.Clone(a.Data), nil
			}
			arrays[name] = a
		}
		call.Arrays = arrays
	}
	call.View = false
	return call
}

// hold takes the call's hold on its Buffer and its arrays' buffers for as long as the
// call runs on this side; the returned func lets go. A buffer released before the call
// is refused.
func hold(tool string, call messages.Call) (func(), error) {
	if call.Buffer == nil && len(call.Arrays) == 0 {
		return func() {}, nil // the common call holds nothing: nothing allocated
	}
	var held []func()
	unhold := func() {
		for _, release := range held {
			release()
		}
	}
	take := func(o nd.Owner, what string) error {
		if !o.Acquire() {
			unhold()
			return fmt.Errorf("pyvisor: execute %s: %w: %s was released before the call", tool, ErrInvalidArgument, what)
		}
		held = append(held, o.Release)
		return nil
	}
	if call.Buffer != nil {
		if err := take(call.Buffer, "its Buffer"); err != nil {
			return nil, err
		}
	}
	for name, a := range call.Arrays {
		if a.Owner != nil {
			if err := take(a.Owner, fmt.Sprintf("the Buffer of array %q", name)); err != nil {
				return nil, err
			}
		}
	}
	return unhold, nil
}
