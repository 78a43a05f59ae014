package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/telemetry"
)

// noDeadline bounds a request whose context has no deadline: the future must expire
// some time, and the reply normally comes long before.
const noDeadline = 24 * time.Hour

// Headers builds the envelope headers of a message sent on behalf of ctx.
func Headers(ctx context.Context) map[string]string {
	h := make(map[string]string, 1)
	if id := telemetry.CorrelationID(ctx); id != "" {
		h[messages.HeaderCorrelationID] = id
	}
	return h
}

// Request is the one way pyvisor asks an actor something: msg goes inside a
// MessageEnvelope whose headers carry the call's correlation id (protoactor's own
// Request sends none) and whose sender is a fresh future; Request waits for the reply
// or for ctx to end.
func Request(ctx context.Context, system *actor.ActorSystem, pid *actor.PID, msg any) (any, error) {
	timeout := noDeadline
	if d, ok := ctx.Deadline(); ok {
		// The caller's own select ends at the deadline; the future outlives it a little
		// so a reply racing the deadline is still taken.
		timeout = time.Until(d) + time.Second
	}
	future := actor.NewFuture(system, timeout)
	system.Root.Send(pid, &actor.MessageEnvelope{
		Header:  Headers(ctx),
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

// Forward sends msg to pid in an envelope with the given headers and sender, so a
// reply goes straight to the original caller.
func Forward(ctx actor.SenderContext, pid *actor.PID, header map[string]string, sender *actor.PID, msg any) {
	ctx.Send(pid, &actor.MessageEnvelope{Header: header, Message: msg, Sender: sender})
}
