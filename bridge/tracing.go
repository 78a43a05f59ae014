package bridge

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// unsampledHandler puts otelgrpc's client instrumentation (inner) on the RPCs whose
// trace is sampled, or that start one, and keeps it off those made inside a trace that
// is not sampled: those get no span (none would be recorded) and no metrics work, only
// their trace context in the metadata, through prop, so the worker does not sample
// them either. On this machine otelgrpc cost several microseconds per unsampled call.
type unsampledHandler struct {
	inner stats.Handler
	prop  propagation.TextMapPropagator
}

// unsampledRPC marks the context of an RPC that inner does not see.
type unsampledRPC struct{}

func (h unsampledHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.IsSampled() {
		return h.inner.TagRPC(ctx, info)
	}
	carrier := propagation.MapCarrier{}
	h.prop.Inject(ctx, carrier)
	kv := make([]string, 0, 2*len(carrier))
	for k, v := range carrier {
		kv = append(kv, k, v)
	}
	return context.WithValue(metadata.AppendToOutgoingContext(ctx, kv...), unsampledRPC{}, true)
}

func (h unsampledHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(unsampledRPC{}) != nil {
		return
	}
	h.inner.HandleRPC(ctx, s)
}

func (h unsampledHandler) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return h.inner.TagConn(ctx, info)
}

func (h unsampledHandler) HandleConn(ctx context.Context, s stats.ConnStats) {
	h.inner.HandleConn(ctx, s)
}
