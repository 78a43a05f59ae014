package bridge

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rpcService is the service name the channel's call spans carry, as otelgrpc would.
const rpcService = "pyvisor.worker.v1.WorkerService"

// callTracing makes the CLIENT span of each call on the channel (otelgrpc sees only the
// long-lived stream) with the rpc semantic-convention attributes otelgrpc sets, and
// writes the call's W3C trace context into its frame. A nil *callTracing traces nothing.
type callTracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

var clientKind = trace.WithSpanKind(trace.SpanKindClient)

// start returns the call's span (nil when none is made) and its trace carrier. In a trace
// that is not sampled no span is made, but the carrier still hands the trace on, so the
// worker does not sample it either and its log lines join it.
func (t *callTracing) start(ctx context.Context, method, correlationID string) (context.Context, trace.Span, map[string]string) {
	if t == nil {
		return ctx, nil, nil
	}
	var span trace.Span
	if sc := trace.SpanContextFromContext(ctx); !sc.IsValid() || sc.IsSampled() {
		ctx, span = t.tracer.Start(ctx, rpcService+"/"+method, clientKind)
		if span.IsRecording() {
			span.SetAttributes(
				attribute.String("rpc.system", "grpc"),
				attribute.String("rpc.service", rpcService),
				attribute.String("rpc.method", method),
			)
			if correlationID != "" {
				span.SetAttributes(attribute.String("pyvisor.correlation_id", correlationID))
			}
		}
	}
	carrier := make(map[string]string, 2)
	t.prop.Inject(ctx, propagation.MapCarrier(carrier))
	return ctx, span, carrier
}

// end ends a call's span with the gRPC status code the call amounts to.
func endSpan(span trace.Span, code codes.Code, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.Int64("rpc.grpc.status_code", int64(code)))
		if code != codes.OK {
			span.SetStatus(otelcodes.Error, err.Error())
		}
	}
	span.End()
}

// statusCode is the gRPC code an error of a call amounts to (OK for a tool's own error,
// which is a successful response).
func statusCode(err error) codes.Code {
	var ce *CallError
	var te *ToolError
	switch {
	case err == nil:
		return codes.OK
	case errors.As(err, &ce):
		return ce.Code
	case errors.As(err, &te):
		return codes.OK
	case errors.Is(err, ErrWorkerCrashed), errors.Is(err, ErrStopped):
		return codes.Unavailable // the stream to the worker is gone, as gRPC would say
	}
	return status.FromContextError(err).Code()
}
