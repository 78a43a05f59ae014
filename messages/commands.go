package messages

import (
	"context"
	"encoding/json"
	"time"
)

// Call is one tool call as the actors carry it.
type Call struct {
	Tool      string
	Args      json.RawMessage
	Payload   []byte
	SessionID string
	Metadata  map[string]string
	// Idempotent calls are retried once on another worker if theirs dies mid-call.
	Idempotent bool
}

// Execute asks a pool to run a call. Ctx is the caller's context: its deadline and
// cancellation reach Python. The reply is an *ExecuteResult.
type Execute struct {
	Ctx  context.Context
	Call Call
	// Attempt counts tries of an idempotent call (0 for the first).
	Attempt int
}

// ExecuteStream asks a pool to run a streaming call. Chunks, then exactly one final
// *StreamChunk with Done or Err set, are sent on Chunks (in-process only), which the
// caller drains until the final one.
type ExecuteStream struct {
	Ctx    context.Context
	Call   Call
	Chunks chan<- StreamChunk
}

// GetStats asks a pool for its *PoolStats.
type GetStats struct{}

// Resize asks a pool to run Workers workers; the reply is an *Ack.
type Resize struct {
	Workers int
}

// Drain asks a pool to stop taking calls, fail its queued calls with ErrStopped and
// wait up to Deadline for in-flight calls; the reply is an *Ack once nothing is in
// flight or the deadline passed.
type Drain struct {
	Deadline time.Time
}
