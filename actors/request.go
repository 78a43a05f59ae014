package actors

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/propagation"

	"github.com/pyvisor/pyvisor/telemetry"
	"github.com/pyvisor/pyvisor/telemetry/otelactor"
)

// ErrNoActor: a request went to an actor that does not exist (any more): the runtime
// has stopped it. It matches ErrStopped.
var ErrNoActor = fmt.Errorf("%w: no such actor", ErrStopped)

// Request is the one way pyvisor asks an actor something: msg goes inside a
// MessageEnvelope whose headers carry ctx's correlation id, trace context and baggage
// (protoactor's own Request sends none), and whose sender is a one-shot reply process;
// Request waits for the reply or for ctx to end.
//
// The reply process plays the part of protoactor's future, with a channel the caller
// selects on together with ctx: no goroutine per request, and no timer. Stopped, when not
// nil, is closed once the actors have stopped: a request still waiting then ends with
// ErrNoActor, since a stopped mailbox drops what it had not handled.
func Request(ctx context.Context, system *actor.ActorSystem, prop propagation.TextMapPropagator, stopped <-chan struct{}, pid *actor.PID, msg any) (any, error) {
	r := &reply{ch: make(chan any, 1)}
	self, _ := system.ProcessRegistry.Add(r, "reply"+system.ProcessRegistry.NextID())
	defer system.ProcessRegistry.Remove(self)
	system.Root.Send(pid, &actor.MessageEnvelope{
		Header:  otelactor.Inject(ctx, prop, telemetry.CorrelationID(ctx), true),
		Message: msg,
		Sender:  self,
	})
	select {
	case v := <-r.ch:
		if _, dead := v.(*actor.DeadLetterResponse); dead {
			return nil, fmt.Errorf("request %T to %s: %w", msg, pid.Id, ErrNoActor)
		}
		return v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-stopped:
		return nil, fmt.Errorf("request %T to %s: the actors have stopped: %w", msg, pid.Id, ErrNoActor)
	}
}

// reply is a request's one-shot mailbox: the first user message sent to it is the answer.
type reply struct{ ch chan any }

func (r *reply) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	select {
	case r.ch <- msg:
	default: // answered already
	}
}

func (r *reply) SendSystemMessage(*actor.PID, any) {}
func (r *reply) Stop(*actor.PID)                   {}
