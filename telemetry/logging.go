package telemetry

import (
	"context"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// CallLogger returns log with the call's correlation_id, trace_id and span_id, so every
// line about one call can be found in Go and Python logs alike.
func CallLogger(ctx context.Context, log zerolog.Logger) zerolog.Logger {
	c := log.With()
	if id := CorrelationID(ctx); id != "" {
		c = c.Str("correlation_id", id)
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		c = c.Str("trace_id", sc.TraceID().String()).Str("span_id", sc.SpanID().String())
	}
	return c.Logger()
}
