package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// NewCorrelationID returns a short random id, "pv-" and 16 hex digits.
func NewCorrelationID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "pv-" + hex.EncodeToString(b[:])
}
