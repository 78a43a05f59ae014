package otelactor

import (
	"context"
	"fmt"
	"reflect"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/messages"
)

// Traced is embedded by actors that want the context of the message being processed;
// the receiver middleware sets it for the duration of each traced message.
type Traced struct {
	ctx context.Context
}

// MessageContext is the context of the message being processed: it carries the receive
// span (and so the trace) and the baggage; context.Background() for untraced messages.
func (t *Traced) MessageContext() context.Context {
	if t.ctx == nil {
		return context.Background()
	}
	return t.ctx
}

func (t *Traced) setMessageContext(ctx context.Context) { t.ctx = ctx }

type tracedActor interface {
	setMessageContext(context.Context)
}

// ReceiverMiddleware starts a CONSUMER span "receive <Message>" for every message that
// arrives with a sampled trace context in its envelope headers (an unsampled one is
// passed on as it is, with no span): a child of the sender's span
// when the sender awaits the outcome (ReplyHeader), else a new trace linked to it. The
// span carries the actor, the message type and the correlation id, and ends when the
// actor has handled the message.
func ReceiverMiddleware(tp trace.TracerProvider, prop propagation.TextMapPropagator) actor.ReceiverMiddleware {
	tracer := tp.Tracer("github.com/pyvisor/pyvisor/telemetry/otelactor")
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if len(env.Header) == 0 || env.Header.Get("traceparent") == "" {
				next(c, env)
				return
			}
			header := Carrier(env.Header) // read only: no copy
			remote := prop.Extract(context.Background(), header)
			if !trace.SpanContextFromContext(remote).IsSampled() {
				// An unsampled trace: no span would be recorded, so start none; the
				// actor still works inside the sender's (unsampled) context, which is
				// what it passes on.
				if t, ok := c.Actor().(tracedActor); ok {
					t.setMessageContext(remote)
					defer t.setMessageContext(context.Background())
				}
				next(c, env)
				return
			}
			msgName := messageName(env.Message)
			opts := []trace.SpanStartOption{
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.system", "protoactor"),
					attribute.String("messaging.operation", "receive"),
					attribute.String("messaging.destination.name", c.Self().Id),
					attribute.String("pyvisor.message", msgName),
				),
			}
			if id := header.Get(messages.HeaderCorrelationID); id != "" {
				opts = append(opts, trace.WithAttributes(attribute.String("pyvisor.correlation_id", id)))
			}
			parent := remote
			if header.Get(ReplyHeader) == "" {
				// Fire-and-forget: a trace of its own, linked to the sender's.
				opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.LinkFromContext(remote)))
			}
			ctx, span := tracer.Start(parent, "receive "+msgName, opts...)
			defer span.End()
			if t, ok := c.Actor().(tracedActor); ok {
				t.setMessageContext(ctx)
				defer t.setMessageContext(context.Background())
			}
			next(c, env)
		}
	}
}

func messageName(m any) string {
	t := reflect.TypeOf(m)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return fmt.Sprintf("%T", m)
	}
	return t.Name()
}
