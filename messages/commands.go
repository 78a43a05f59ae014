package messages

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pyvisor/pyvisor/nd"
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
	// Buffer, instead of Payload, is a payload written in place in the pool's shared
	// memory (a *shm.Lease), sent with no copy.
	Buffer Buffer
	// View asks for a result payload in shared memory as it lies, released by the
	// result's Release, instead of a copy.
	View bool
	// Arrays are typed arrays and tables, each the keyword argument its name gives.
	Arrays map[string]nd.Array
}

// Buffer is a payload written in place in shared memory: *shm.Lease.
type Buffer interface {
	Bytes() []byte
	nd.Owner // a call holds it while it runs
}

// Execute asks a pool to run a call. Ctx is the caller's context: its deadline and
// cancellation reach Python. A pool that does not run the call answers with an
// *ExecuteResult holding the reason; otherwise it grants the caller one of its workers'
// processes for the call (see actors.Execute).
type Execute struct {
	Ctx  context.Context
	Call Call
	// Attempt counts tries of an idempotent call (0 for the first).
	Attempt int
	// Reply takes the pool's answer or its grant.
	Reply Replier
}

// Replier takes the answer to a call, in-process. It stands in for a sender PID: an
// answer through it costs no process-registry insert, lookup and removal, which were a
// large part of a call's own cost.
type Replier interface {
	Reply(msg any)
}

// ExecuteStream asks a pool to run a streaming call. Ctx is the caller's context, as
// for Execute.
type ExecuteStream struct {
	Ctx   context.Context
	Call  Call
	Reply Replier
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
