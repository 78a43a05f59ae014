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

// unsampled reports whether ctx carries a trace that is not sampled. An RPC whose own
// span otelgrpc made unsampled (a new trace the sampler said no to) counts too: with
// the bridge's metrics off, otelgrpc has nothing to do for it either.
func unsampled(ctx context.Context) bool {
	sc := trace.SpanContextFromContext(ctx)
	return sc.IsValid() && !sc.IsSampled()
}

func (h unsampledHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if !unsampled(ctx) {
		return h.inner.TagRPC(ctx, info)
	}
	kv := make(pairs, 0, 4)
	h.prop.Inject(ctx, &kv)
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func (h unsampledHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if unsampled(ctx) {
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

// pairs is a write-only propagation carrier of metadata key, value pairs.
type pairs []string

func (*pairs) Get(string) string   { return "" }
func (*pairs) Keys() []string      { return nil }
func (p *pairs) Set(key, v string) { *p = append(*p, key, v) }
