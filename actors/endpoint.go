package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/telemetry"
)

// endpointStopped: the metrics server stopped on its own.
type endpointStopped struct{ err error }

// endpoint is the actor that keeps the metrics endpoint serving: the server failing is
// the actor failing, so the guardian restarts it (and it listens again).
type endpoint struct {
	ep *telemetry.MetricsEndpoint
}

func (e *endpoint) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		system, self, ep := ctx.ActorSystem(), ctx.Self(), e.ep
		go func() {
			err := ep.Serve()
			system.Root.Send(self, &endpointStopped{err: err})
		}()
	case *endpointStopped:
		if msg.err != nil {
			panic(msg.err)
		}
	case *actor.Stopping, *actor.Restarting:
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.ep.Close(sctx)
	}
}

// EndpointChild is the guardian's child spec of the metrics endpoint.
func EndpointChild(ep *telemetry.MetricsEndpoint) supervision.Child {
	return supervision.Child{
		ID:       "metrics-endpoint",
		Producer: func() actor.Actor { return &endpoint{ep: ep} },
		Restart:  supervision.Permanent,
	}
}
