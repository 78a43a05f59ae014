package messages

import (
	"encoding/json"
	"time"

	"github.com/pyvisor/pyvisor/nd"
)

// ExecuteResult is the outcome of a call: a result, or Err.
type ExecuteResult struct {
	JSON    json.RawMessage
	Payload []byte
	Arrays  map[string]nd.Array
	Err     error
	Worker  string // the worker slot that ran it
	Version string // the tool code it ran (bridge.Info.CodeVersion)
	// Release gives back a payload and arrays viewed in shared memory (Call.View); nil
	// otherwise.
	Release func()
}

// Ack answers a command that has no other result.
type Ack struct {
	Err error
}

// PoolStats is a snapshot of a pool.
type PoolStats struct {
	Pool  string
	State string // "starting", "running", "draining", "failed"
	// Upgrading: a Reload is rolling new code through the pool.
	Upgrading bool
	// Sessions is how many sessions the pool holds open in its workers.
	Sessions int
	// MemoryEnforcement says how the pool's memory limit is enforced: "sampler" (every
	// 50 ms, while calls run), or "" without a limit.
	MemoryEnforcement string
	Err               error // why the pool failed, when it did
	Workers           []WorkerStats
	Queued            int
	Restarts          map[string]int // by reason
	Recycled          map[string]int // by reason
	Rejected          map[string]int // by reason
	Completed         uint64
}

// WorkerStats is a snapshot of one worker slot.
type WorkerStats struct {
	ID      string // "<pool>-<Slot>"
	Slot    int    // the slot's index, kept across restarts and recycles (PYVISOR_SLOT)
	PID     int    // of the current Python process; 0 while down
	Address string // where that process serves (its Unix socket, or 127.0.0.1:port)
	State   string // "ready", "loading" (importing its tools) or "down"
	// Version names the tool code the worker runs (bridge.Info.CodeVersion); "" while down.
	Version  string
	InFlight int
	Calls    uint64 // calls finished on this slot, across restarts
	Started  time.Time
	// Heartbeat counts, across restarts (zero with heartbeats off).
	HeartbeatPings  uint64
	HeartbeatMisses uint64
}
