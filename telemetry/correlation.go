package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"go.opentelemetry.io/otel/baggage"
)

type correlationKey struct{}

// WithCorrelationID returns a context carrying id as the correlation id of the calls
// made with it. pyvisor keeps a caller's id; it generates one only when none is set.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation id ctx carries, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// NewCorrelationID returns a short random id, "pv-" and 16 hex digits. The id names a
// call in logs and traces; it is not a secret, so it comes from the runtime's fast
// random source (math/rand/v2), not from the OS (a system call per call).
func NewCorrelationID() string {
	var b [19]byte
	var n [8]byte
	copy(b[:], "pv-")
	binary.BigEndian.PutUint64(n[:], rand.Uint64())
	hex.Encode(b[3:], n[:])
	return string(b[:])
}

// BaggageKey is the baggage member that carries the correlation id, so services that
// read only baggage still see it.
const BaggageKey = "correlation_id"

// WithCorrelationBaggage adds ctx's correlation id to its baggage.
func WithCorrelationBaggage(ctx context.Context) context.Context {
	id := CorrelationID(ctx)
	if id == "" {
		return ctx
	}
	m, err := baggage.NewMemberRaw(BaggageKey, id)
	if err != nil {
		return ctx
	}
	b, err := baggage.FromContext(ctx).SetMember(m)
	if err != nil {
		return ctx
	}
	return baggage.ContextWithBaggage(ctx, b)
}
