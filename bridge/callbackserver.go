package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/nd"
	"github.com/pyvisor/pyvisor/telemetry"
)

// callbackServer runs the Go callbacks a worker's tools call on its channel.
type callbackServer struct {
	funcs    map[string]CallbackFunc
	names    string       // the registered names, for an unknown name's error
	tracer   trace.Tracer // nil: no spans
	prop     propagation.TextMapPropagator
	log      zerolog.Logger
	observe  CallbackObserver // nil: nobody listens
	maxBytes int
	// place puts the arrays of a callback's result where they travel (the client's
	// placeReply); held is what frees them, once the call is over.
	place func(ctx context.Context, name string, arrays map[string]nd.Array) (wire []*workerv1.Array, held func(), err error)
}

func newCallbackServer(cfg config, tracer trace.Tracer) *callbackServer {
	names := strings.Join(callbackNames(cfg.callbacks), ", ")
	if names == "" {
		names = "none"
	}
	return &callbackServer{
		funcs:    cfg.callbacks,
		names:    names,
		tracer:   tracer,
		prop:     cfg.propagator,
		log:      cfg.logger.With().Str("worker", cfg.workerID).Logger(),
		observe:  cfg.observeCallback,
		maxBytes: cfg.maxMessageBytes,
	}
}

var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// serve runs one callback of the call whose correlation id is cid, under ctx (the call's
// context, cancelled when the Python caller goes), and returns its reply; held frees the
// reply's arrays in shared memory, once the call is over.
func (s *callbackServer) serve(ctx context.Context, cid string, msg *workerv1.Callback) (reply *workerv1.CallbackReply, held func()) {
	name := msg.GetName()
	fn := s.funcs[name]
	held = func() {}
	if fn == nil {
		return callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_UNKNOWN_CALLBACK, fmt.Sprintf("no Go callback %q (registered: %s)", name, s.names)), held
	}
	if t := msg.GetTimeoutMicros(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Microsecond)
		defer cancel()
	}
	if carrier := msg.GetTraceContext(); len(carrier) > 0 {
		ctx = s.prop.Extract(ctx, propagation.MapCarrier(carrier))
	}
	if cid != "" && telemetry.CorrelationID(ctx) != cid {
		ctx = telemetry.WithCorrelationID(ctx, cid)
	}
	var span trace.Span
	if s.tracer != nil {
		ctx, span = s.tracer.Start(ctx, "callback "+name, serverKind)
		if span.IsRecording() {
			span.SetAttributes(attribute.String("pyvisor.callback", name))
			if cid != "" {
				span.SetAttributes(attribute.String("pyvisor.correlation_id", cid))
			}
		}
	}
	log := telemetry.CallLogger(ctx, s.log).With().Str("callback", name).Logger()
	ctx = log.WithContext(ctx)
	args := json.RawMessage(msg.GetArguments())
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}

	began := time.Now()
	reply, held = s.run(ctx, log, fn, args, msg)
	took := time.Since(began)
	outcome := CallbackOK
	if gerr := reply.GetError(); gerr != nil {
		outcome = gerr.GetKind()
	}
	if span != nil {
		if outcome != CallbackOK && span.IsRecording() {
			gerr := reply.GetError()
			span.SetStatus(otelcodes.Error, gerr.GetKind()+": "+gerr.GetMessage())
			span.SetAttributes(attribute.String("pyvisor.callback.error_kind", outcome))
		}
	}
	if s.observe != nil {
		s.observe(ctx, name, outcome, took)
	}
	if span != nil {
		span.End()
	}
	return reply, held
}

// run runs fn and makes its reply. A panic, in fn or in what encodes its outcome (a
// MarshalJSON, an Error method), is logged with its stack and becomes kind panic.
func (s *callbackServer) run(ctx context.Context, log zerolog.Logger, fn CallbackFunc, args json.RawMessage, msg *workerv1.Callback) (reply *workerv1.CallbackReply, held func()) {
	held = func() {}
	defer func() {
		if r := recover(); r != nil {
			log.Error().Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).
				Msg("go callback panicked; python gets the error")
			reply = callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_PANIC, fmt.Sprintf("callback %q panicked: %v", msg.GetName(), r))
		}
	}()
	v, err := fn(ctx, args)
	if err != nil {
		return callbackFailed(msg, callbackKind(err), err.Error()), held
	}
	v, arrays := splitArrays(v)
	reply = s.reply(msg, v)
	if len(arrays) == 0 || reply.GetError() != nil {
		return reply, held
	}
	if s.place == nil {
		return callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_ERROR, "callback returned arrays, which this worker cannot take"), held
	}
	wire, held, err := s.place(ctx, msg.GetName(), arrays)
	if err != nil {
		return callbackFailed(msg, callbackKind(err), "callback result: "+err.Error()), func() {}
	}
	if held == nil {
		held = func() {}
	}
	reply.Arrays = wire
	return reply, held
}

// reply is the CallbackReply of a callback's JSON result.
func (s *callbackServer) reply(msg *workerv1.Callback, v any) *workerv1.CallbackReply {
	var err error
	var b []byte
	if raw, ok := v.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_ERROR, "callback returned a json.RawMessage that is not valid JSON")
		}
		b = raw
	} else if b, err = json.Marshal(v); err != nil {
		return callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_ERROR, "callback result is not JSON-encodable: "+err.Error())
	}
	if len(b) > s.maxBytes {
		return callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_MESSAGE_TOO_LARGE, fmt.Sprintf("callback result is %d bytes, over the limit of %d bytes", len(b), s.maxBytes))
	}
	return &workerv1.CallbackReply{CallbackId: msg.GetCallbackId(), Outcome: &workerv1.CallbackReply_Json{Json: b}}
}

// maxErrorMessage bounds a GoError's message: an error's text is not the place for bulk
// data, and a frame the channel cannot send would break it for every call.
const maxErrorMessage = 64 << 10

func callbackFailed(msg *workerv1.Callback, kind workerv1.GoErrorKind, message string) *workerv1.CallbackReply {
	// A proto string must be UTF-8, or the frame cannot be encoded (and its Send ends
	// the stream): an error's text may hold anything.
	message = strings.ToValidUTF8(message, "\uFFFD")
	if len(message) > maxErrorMessage {
		message = strings.ToValidUTF8(message[:maxErrorMessage], "") + "... (cut at 64 KiB)"
	}
	return &workerv1.CallbackReply{CallbackId: msg.GetCallbackId(), Outcome: &workerv1.CallbackReply_Error{
		Error: &workerv1.GoError{Kind: workerv1.Wire(kind), Message: message, Callback: msg.GetName()},
	}}
}
