package otelactor

import (
	"context"

	"go.opentelemetry.io/otel/propagation"

	"github.com/pyvisor/pyvisor/messages"
)

// ReplyHeader marks a message whose sender waits for its outcome: its receive span is a
// child of the sender's span rather than linked to it.
const ReplyHeader = "pyvisor-reply"

// Inject returns envelope headers for a message sent on behalf of ctx: the correlation
// id, the trace context and baggage (through prop), and ReplyHeader when awaited.
func Inject(ctx context.Context, prop propagation.TextMapPropagator, correlationID string, awaited bool) map[string]string {
	h := make(Carrier, 4)
	if correlationID != "" {
		h[messages.HeaderCorrelationID] = correlationID
	}
	if awaited {
		h[ReplyHeader] = "1"
	}
	if prop != nil {
		prop.Inject(ctx, h)
	}
	return h
}
