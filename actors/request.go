package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/propagation"

	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/telemetry"
	"github.com/pyvisor/pyvisor/telemetry/otelactor"
)

// noDeadline bounds a request whose context has no deadline: the future must expire
// some time, and the reply normally comes long before.
const noDeadline = 24 * time.Hour

// Request is the one way pyvisor asks an actor something: msg goes inside a
// MessageEnvelope whose headers carry ctx's correlation id, trace context and baggage
// (protoactor's own Request sends none) and whose sender is a fresh future; Request
// waits for the reply or for ctx to end.
func Request(ctx context.Context, system *actor.ActorSystem, prop propagation.TextMapPropagator, pid *actor.PID, msg any) (any, error) {
	timeout := noDeadline
	if d, ok := ctx.Deadline(); ok {
		// The caller's own select ends at the deadline; the future outlives it a little
		// so a reply racing the deadline is still taken.
		timeout = time.Until(d) + time.Second
	}
	future := actor.NewFuture(system, timeout)
	system.Root.Send(pid, &actor.MessageEnvelope{
		Header:  otelactor.Inject(ctx, prop, telemetry.CorrelationID(ctx), true),
		Message: msg,
		Sender:  future.PID(),
	})
	reply := make(chan futureResult, 1)
	go func() {
		v, err := future.Result()
		reply <- futureResult{v, err}
	}()
	select {
	case r := <-reply:
		if r.err != nil {
			return nil, fmt.Errorf("request %T: %w", msg, r.err)
		}
		return r.v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type futureResult struct {
	v   any
	err error
}

// Send delivers msg on behalf of ctx, with the same headers as Request, to an actor that
// answers some other way (a stream's channel); the sender awaits the outcome.
func Send(ctx context.Context, system *actor.ActorSystem, prop propagation.TextMapPropagator, pid *actor.PID, msg any) {
	system.Root.Send(pid, &actor.MessageEnvelope{
		Header:  otelactor.Inject(ctx, prop, telemetry.CorrelationID(ctx), true),
		Message: msg,
	})
}

// Forward passes a message on for its original sender, so a reply goes straight to the
// caller; the trace context is that of ctx (the forwarding actor's span), the other
// headers are kept.
func Forward(ctx context.Context, sender actor.SenderContext, prop propagation.TextMapPropagator, pid *actor.PID, header map[string]string, replyTo *actor.PID, msg any) {
	h := otelactor.Inject(ctx, prop, header[messages.HeaderCorrelationID], header[otelactor.ReplyHeader] != "")
	sender.Send(pid, &actor.MessageEnvelope{Header: h, Message: msg, Sender: replyTo})
}
