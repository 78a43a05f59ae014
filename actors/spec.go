package actors

import (
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/telemetry"
)

// PoolSpec is everything a Pool actor needs; the facade builds it from the
// configuration, where every default is documented.
type PoolSpec struct {
	Name           string
	Workers        int
	StartupBatch   int // processes spawned at once
	MaxConcurrent  int // calls in flight per worker
	QueueSize      int
	QueueTimeout   time.Duration
	StrictAffinity bool          // session calls wait for their worker instead of falling back
	StopTimeout    time.Duration // per worker
	CancelGrace    time.Duration // how long a cancelled body may run on before its worker is replaced
	Bridge         []bridge.Option
	Upgrade        UpgradeSpec
	Sessions       SessionSpec
	// MemoryLimit, when positive, kills a worker whose resident memory passes it, sampled
	// every MemorySample while it serves (memory.go).
	MemoryLimit int64
	// SlotEnv makes the environment of a slot's processes, on top of Bridge's, from the
	// slot's index and the pool's size (the facade's names the slot and the pool in
	// PYVISOR_SLOT and PYVISOR_POOL); nil adds none. It is called once per slot, when
	// the slot is made (its restarts and recycles reuse the result); an error fails the
	// pool's start, or the Resize that made the slot.
	SlotEnv        func(slot, workers int) (map[string]string, error)
	Heartbeat      HeartbeatSpec
	MaxRestarts    int
	Within         time.Duration
	Backoff        *supervision.Backoff
	Recycle        RecycleSpec
	Logger         zerolog.Logger
	TracerProvider trace.TracerProvider          // required: the facade passes the global one by default
	Propagator     propagation.TextMapPropagator // required, likewise
	Metrics        *telemetry.Metrics            // required; no-op instruments when metrics are off
	// OnReady is called once: nil when the first Workers workers serve, or the error
	// that stopped the pool from getting there.
	OnReady func(error)
	// Halt, when closed, cuts short the graceful stop of every worker still stopping:
	// its process group is killed at once instead of being given StopTimeout. The
	// owner closes it once its own stop deadline has passed. nil never halts.
	Halt <-chan struct{}
}

// HeartbeatSpec configures a worker's Heartbeat child; Enabled false spawns none.
type HeartbeatSpec struct {
	Enabled      bool
	Trace        bool // pings get spans of their own (in their own traces)
	Interval     time.Duration
	Timeout      time.Duration
	MaxMissed    int
	InitialDelay time.Duration
}

// UpgradeSpec says how a Reload rolls new code through a pool (docs/upgrades.md).
type UpgradeSpec struct {
	// WarmUpTool, when set, is called with WarmUpArgs (JSON) on each new process before it
	// takes traffic; an error rolls the upgrade back.
	WarmUpTool string
	WarmUpArgs []byte
	// WarmUpTimeout bounds the warm-up call.
	WarmUpTimeout time.Duration
	// DrainTimeout bounds how long an old process may finish its calls once the upgrade is
	// done; then it is stopped (cancel, grace, kill).
	DrainTimeout time.Duration
	// Canary, when positive, is how long the first upgraded worker serves alone on the new
	// code before the others follow; more than MaxFailureRatio of its calls failing then
	// rolls the upgrade back.
	Canary          time.Duration
	MaxFailureRatio float64
	// MaxSurge is how many slots upgrade at once (each has two processes meanwhile);
	// at least 1.
	MaxSurge int
	// SessionDeadline, when positive, keeps a slot's sessions on its old process after its
	// swap until they end or this long has passed; then they move. 0: they move at the swap.
	SessionDeadline time.Duration
}

// RecycleSpec says when a healthy worker's process is replaced; zero means never.
type RecycleSpec struct {
	MaxCalls    uint64
	MaxAge      time.Duration
	MaxRSSBytes int64
	MaxGPUBytes int64 // of the process and its descendants, as nvidia-smi reports it
}
