package pyvisor

import (
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/cluster"
)

// Defaults of the configuration. A zero field means its default; WithDefaults
// fills them in. See docs/configuration.md.
const (
	// DefaultStartTimeout is no cap of Start's own: its ctx, and each worker's handshake
	// and load timeouts, bound it.
	DefaultStartTimeout = 0
	DefaultStopTimeout  = 30 * time.Second

	DefaultWorkers           = 2
	MaxWorkers               = 256
	DefaultStartupBatch      = 8
	DefaultMaxConcurrent     = 1
	DefaultQueueSize         = 1000
	DefaultQueueTimeout      = 10 * time.Second
	DefaultAffinity          = AffinityHint
	DefaultMetricsAddress    = "127.0.0.1:9568"
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultLoadTimeout       = 10 * time.Minute
	DefaultWorkerStopTimeout = 5 * time.Second
	DefaultCancelGrace       = 5 * time.Second
	DefaultMaxMessageBytes   = 16 << 20

	DefaultHeartbeatInterval  = 2 * time.Second
	DefaultHeartbeatTimeout   = 10 * time.Second
	DefaultHeartbeatMaxMissed = 3

	DefaultMaxRestarts   = 3
	DefaultRestartWithin = 5 * time.Second

	DefaultWarmUpTimeout = time.Minute
	DefaultDrainTimeout  = 30 * time.Second

	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffMultiplier = 2.0
)

// Session affinity modes of a pool (PoolConfig.Affinity).
const (
	// AffinityHint sends a call with a session id to the worker holding the
	// session when it is free, and to any worker otherwise.
	AffinityHint = "hint"
	// AffinityStrict makes a call with a session id wait for the worker
	// holding the session.
	AffinityStrict = "strict"
)

// NoQueue as PoolConfig.QueueSize disables the queue: a call that finds every
// worker busy is rejected at once with ErrPoolSaturated.
const NoQueue = -1

// Config is the configuration of a runtime. The zero value of every field
// means its documented default (WithDefaults fills them in), so a Config
// needs only its pools. Load one from a file with LoadConfig, apply PYVISOR_*
// environment overrides with WithEnv, and check it with Validate (Start does
// both WithDefaults and Validate).
//
// The YAML/JSON key of each field is its name in snake_case (given by the
// struct tags); durations are strings such as "2s" or "1m30s" in files.
type Config struct {
	// Python is the interpreter every pool runs. Default "": the bridge's
	// choice (bridge.Interpreter: $PYVISOR_PYTHON, else the nearest
	// .venv/bin/python, else python3). Env: PYVISOR_PYTHON.
	Python string `json:"python" yaml:"python"`
	// Dir is the folder the configuration's relative paths start from: a relative
	// Python, each pool's Dir (a pool with none runs its workers there, so the tools
	// modules beside the configuration import), and where the nearest .venv is looked
	// for when Python is unset. LoadConfig sets it to the configuration file's folder
	// (a relative Dir in the file is taken from there). Default "": the working
	// directory, as before.
	Dir string `json:"dir" yaml:"dir"`
	// Environments is the folder of the pools' built environments (PoolConfig.Requirements),
	// relative to Dir. Default "": $PYVISOR_ENVIRONMENTS, else pyvisor/environments in the
	// user's cache folder (envs.DefaultDir). See docs/environments.md.
	Environments string `json:"environments" yaml:"environments"`
	// Pools are the worker pools, started in this order. No default: at
	// least one pool is required.
	Pools []PoolConfig `json:"pools" yaml:"pools"`
	// StartTimeout bounds how long Start waits for the workers of every
	// pool to be serving. Default 60s.
	StartTimeout time.Duration `json:"start_timeout" yaml:"start_timeout"`
	// StopTimeout bounds how long Stop waits overall. Default 30s.
	StopTimeout time.Duration `json:"stop_timeout" yaml:"stop_timeout"`

	// Metrics configures the Prometheus endpoint (off by default: nothing
	// listens).
	Metrics MetricsConfig `json:"metrics" yaml:"metrics"`

	// Cluster makes this runtime a node of a cluster, whose pools are called
	// by name from any node (docs/cluster.md). Default: no cluster, this
	// process alone.
	Cluster ClusterConfig `json:"cluster" yaml:"cluster"`
}

// ClusterConfig makes a runtime a node of a cluster: see cluster.Config and
// docs/cluster.md.
type ClusterConfig = cluster.Config

// MetricsConfig configures the runtime's Prometheus metrics endpoint.
type MetricsConfig struct {
	// Enabled serves the metrics. Default false: no listener at all.
	// Env: PYVISOR_METRICS_ADDR (setting it enables the endpoint).
	Enabled bool `json:"enabled" yaml:"enabled"`
	// Address is the host:port to listen on, /metrics being the path.
	// Default "127.0.0.1:9568" (loopback only).
	Address string `json:"address" yaml:"address"`
}

// PoolConfig configures one pool of Python workers serving the same tools.
type PoolConfig struct {
	// Name identifies the pool in calls, logs and metrics. Required, unique,
	// made of [a-z0-9_-].
	Name string `json:"name" yaml:"name"`
	// Tools are the Python modules whose @tool functions the workers serve,
	// for example "pyvisor_worker.examples". Required, at least one.
	Tools []string `json:"tools" yaml:"tools"`
	// Workers is the number of Python processes. Default 2; 1 to 256.
	// Env: PYVISOR_WORKERS (every pool).
	Workers int `json:"workers" yaml:"workers"`
	// StartupBatch is how many workers start concurrently. Default 8.
	StartupBatch int `json:"startup_batch" yaml:"startup_batch"`
	// MaxConcurrent is the number of calls in flight per worker. Default 1.
	MaxConcurrent int `json:"max_concurrent" yaml:"max_concurrent"`
	// QueueSize is how many calls may wait when every worker is busy; one
	// more is rejected with ErrPoolSaturated. Default 1000; NoQueue (-1)
	// rejects at once. Env: PYVISOR_QUEUE_SIZE (every pool).
	QueueSize int `json:"queue_size" yaml:"queue_size"`
	// QueueTimeout is the longest a call waits in the queue before failing
	// with ErrQueueTimeout. Default 10s. Env: PYVISOR_QUEUE_TIMEOUT (every
	// pool).
	QueueTimeout time.Duration `json:"queue_timeout" yaml:"queue_timeout"`
	// Affinity is the session affinity mode: AffinityHint ("hint", the
	// default) or AffinityStrict ("strict").
	Affinity string `json:"affinity" yaml:"affinity"`
	// HandshakeTimeout bounds how long a starting worker has to answer its
	// handshake: the interpreter and the worker package, not the tools modules.
	// Default 10s.
	HandshakeTimeout time.Duration `json:"handshake_timeout" yaml:"handshake_timeout"`
	// LoadTimeout bounds the import of a worker's tools modules, which comes after its
	// handshake (a model's load may take minutes). Default 10m.
	LoadTimeout time.Duration `json:"load_timeout" yaml:"load_timeout"`
	// StopTimeout is how long a worker may take to stop gracefully before
	// its process is killed. Default 5s.
	StopTimeout time.Duration `json:"stop_timeout" yaml:"stop_timeout"`
	// CancelGrace is how long a call's Python body may go on after its caller
	// gave up (deadline or cancellation) before the worker is replaced, with
	// restart reason stuck_body. Its slot stays taken until then. Default 5s.
	CancelGrace time.Duration `json:"cancel_grace" yaml:"cancel_grace"`
	// MaxMessageBytes is the largest message exchanged with a worker, each
	// way. Default 16 MiB.
	MaxMessageBytes int `json:"max_message_bytes" yaml:"max_message_bytes"`
	// Env is extra environment for the worker processes, on top of the
	// runtime's own. Default none.
	Env map[string]string `json:"env" yaml:"env"`
	// Slots is environment that differs per worker slot (a GPU each, a port
	// each), on top of Env. Default none. See docs/gpus.md.
	Slots SlotsConfig `json:"slots" yaml:"slots"`
	// Dir is the working directory of the worker processes. Default "": the
	// runtime's working directory.
	Dir string `json:"dir" yaml:"dir"`
	// Python is the pool's own interpreter (a path, relative to Config.Dir, or a command),
	// over Config.Python; with Requirements, the Python its environment is built on.
	// Default "": Config.Python's choice.
	Python string `json:"python" yaml:"python"`
	// Requirements gives the pool an environment of its own, built by `pyvisor setup
	// -config FILE` into Config.Environments: a requirements file, a pyproject.toml or a
	// uv.lock, relative to Config.Dir. Two pools may pin different versions of one
	// package. Default "": the pool runs Python (or Config.Python) as it is.
	Requirements string `json:"requirements" yaml:"requirements"`
	// Heartbeat configures the liveness pings (off by default).
	Heartbeat HeartbeatConfig `json:"heartbeat" yaml:"heartbeat"`
	// Restart configures the restart intensity of the pool's workers.
	Restart RestartConfig `json:"restart" yaml:"restart"`
	// Recycle configures when a healthy worker is replaced (never by
	// default).
	Recycle RecycleConfig `json:"recycle" yaml:"recycle"`
	// Upgrade says how Runtime.Reload rolls new tool code through the pool
	// (docs/upgrades.md).
	Upgrade UpgradeConfig `json:"upgrade" yaml:"upgrade"`
	// MemoryLimit, when positive, is the most resident memory a worker's Python process may
	// hold, in bytes, enforced while it runs calls: sampled every 50 ms, a worker past it
	// is killed at once (its call fails with ErrMemoryLimit) and replaced, restart reason
	// memory_limit. Default 0: no limit. Recycle.MaxRSSBytes is the soft threshold between
	// calls. See docs/limits.md.
	MemoryLimit int64 `json:"memory_limit" yaml:"memory_limit"`
	// Sessions bounds the pool's sessions (none by default).
	Sessions SessionsConfig `json:"sessions" yaml:"sessions"`
	// SharedMemory says how large payloads travel between Go and the workers
	// (docs/data.md): through shared memory by default, where the system has it.
	SharedMemory SharedMemoryConfig `json:"shared_memory" yaml:"shared_memory"`
}

// HeartbeatConfig configures the pings a worker's Heartbeat actor sends its
// Python process. MaxMissed misses in a row fail the worker, which its pool
// replaces.
type HeartbeatConfig struct {
	// Enabled turns heartbeats on. Default false (opt-in).
	// Env: PYVISOR_HEARTBEAT=true|false (every pool).
	Enabled bool `json:"enabled" yaml:"enabled"`
	// Interval is the time between pings. Default 2s.
	Interval time.Duration `json:"interval" yaml:"interval"`
	// Timeout bounds each ping; a ping not answered in time is a miss.
	// Default 10s.
	Timeout time.Duration `json:"timeout" yaml:"timeout"`
	// MaxMissed is how many misses in a row fail the worker. Default 3.
	MaxMissed int `json:"max_missed" yaml:"max_missed"`
	// InitialDelay is the wait before the first ping. Default: Interval.
	InitialDelay time.Duration `json:"initial_delay" yaml:"initial_delay"`
	// Trace gives every ping a short trace of its own (Go and Python side).
	// Default false: pings would drown the traces of calls.
	Trace bool `json:"trace" yaml:"trace"`
}

// RestartConfig is the restart intensity of a pool's workers (Elixir's
// max_restarts in max_seconds): one restart more than MaxRestarts within
// Within fails the pool.
//
// Both zero means the default, 3 restarts within 5s. A zero Within alone
// becomes 5s, so MaxRestarts 0 with a non-zero Within forbids restarts.
type RestartConfig struct {
	// MaxRestarts is the number of restarts allowed within Within.
	// Default 3 (when Within is zero too).
	MaxRestarts int `json:"max_restarts" yaml:"max_restarts"`
	// Within is the sliding window of MaxRestarts. Default 5s.
	Within time.Duration `json:"within" yaml:"within"`
	// Backoff delays restarts (none by default).
	Backoff BackoffConfig `json:"backoff" yaml:"backoff"`
}

// BackoffConfig is an exponential delay before each restart of a worker:
// Initial, then multiplied by Multiplier at each restart, up to Max.
type BackoffConfig struct {
	// Initial is the first delay. Default 0: no backoff, restart at once.
	Initial time.Duration `json:"initial" yaml:"initial"`
	// Max caps the delay. Default 30s (or Initial if longer) when
	// Initial > 0.
	Max time.Duration `json:"max" yaml:"max"`
	// Multiplier grows the delay at each restart. Default 2 when
	// Initial > 0; at least 1.
	Multiplier float64 `json:"multiplier" yaml:"multiplier"`
}

// SharedMemoryConfig sizes a pool's shared memory. Payloads (WithPayload, WithBuffer,
// a tool's returned bytes, stream chunks) of Threshold bytes or more travel through it:
// the frame carries a handle, the bytes are written once and read in place. Arenas
// cost address space, not memory, until their pages are used.
type SharedMemoryConfig struct {
	// Off sends every payload in the frames, bounded by MaxMessageBytes.
	Off bool `json:"off" yaml:"off"`
	// Threshold is the smallest payload, in bytes, that goes through shared
	// memory. Default 64 KiB.
	Threshold int `json:"threshold" yaml:"threshold"`
	// MaxPayloadBytes caps one payload, either way; a larger one fails with
	// ErrMessageTooLarge. Default 2 GiB.
	MaxPayloadBytes int64 `json:"max_payload_bytes" yaml:"max_payload_bytes"`
	// PoolBytes sizes the pool's input arena, which holds the payloads of its
	// calls in flight (and Buffers from Alloc); a call waits, to its deadline,
	// while it is full. Default 4 GiB.
	PoolBytes int64 `json:"pool_bytes" yaml:"pool_bytes"`
	// WorkerBytes sizes each worker's output arena, which holds the payloads it
	// returns until Go has read (or released) them; a worker waits while its
	// arena is full. Default 4 GiB.
	WorkerBytes int64 `json:"worker_bytes" yaml:"worker_bytes"`
	// RetainBytes of each arena keep their pages when free; free pages above
	// go back to the system TrimAfter after the last free. Default 256 MiB.
	RetainBytes int64 `json:"retain_bytes" yaml:"retain_bytes"`
	// TrimAfter: see RetainBytes. Default 10s.
	TrimAfter time.Duration `json:"trim_after" yaml:"trim_after"`
}

// SessionsConfig bounds a pool's sessions (pyvisor.WithSession): a session the pool
// closes has its state dropped in the worker, and a later call with its id starts afresh.
// Sessions with a call running, or pinned to an upgrade's old code, are not closed.
type SessionsConfig struct {
	// IdleTimeout closes a session this long after its last call ended. Default 0: never.
	IdleTimeout time.Duration `json:"idle_timeout" yaml:"idle_timeout"`
	// Max is the most sessions the pool holds: a new one past it closes the least recently
	// used. Default 0: no bound.
	Max int `json:"max" yaml:"max"`
}

// UpgradeConfig says how Runtime.Reload rolls new tool code through a pool: one worker
// at a time, each new process loaded (and warmed up) before it takes a call, each old one
// kept until the whole pool runs the new code, so a failure rolls back.
type UpgradeConfig struct {
	// WarmUpTool is called on each new worker, with WarmUpArgs, before it takes traffic;
	// an error rolls the upgrade back. Default "": no warm-up.
	WarmUpTool string `json:"warm_up_tool" yaml:"warm_up_tool"`
	// WarmUpArgs are the warm-up call's arguments, a JSON object. Default none.
	WarmUpArgs string `json:"warm_up_args" yaml:"warm_up_args"`
	// WarmUpTimeout bounds the warm-up call. Default 1m.
	WarmUpTimeout time.Duration `json:"warm_up_timeout" yaml:"warm_up_timeout"`
	// DrainTimeout bounds how long an old worker may finish its calls once the pool runs
	// the new code; then it is stopped (its calls cancelled, their grace, then kill).
	// Default 30s.
	DrainTimeout time.Duration `json:"drain_timeout" yaml:"drain_timeout"`
	// Canary, when positive, is how long the first upgraded worker serves alone on the new
	// code before the others follow: more than MaxFailureRatio of its calls failing in it
	// rolls the upgrade back. Default 0: no canary.
	Canary time.Duration `json:"canary" yaml:"canary"`
	// MaxFailureRatio is the share of the canary's calls that may fail (a tool's exception,
	// a crash; not a caller's cancellation) without a rollback, 0 to 1. Default 0: any.
	MaxFailureRatio float64 `json:"max_failure_ratio" yaml:"max_failure_ratio"`
	// MaxSurge is how many workers upgrade at once: each has its old and its new process
	// meanwhile (the memory an upgrade costs), and none has fewer ready workers. Default 1.
	MaxSurge int `json:"max_surge" yaml:"max_surge"`
	// SessionDeadline, when positive, keeps a worker's sessions on its old code after the
	// worker swaps to the new one, until they end (Runtime.CloseSession) or this long has
	// passed; then they move, their state through the tools' @on_upgrade hook. Default 0:
	// they move at the swap.
	SessionDeadline time.Duration `json:"session_deadline" yaml:"session_deadline"`
	// Watch is development mode: the runtime watches the pool's tool code (every .py
	// file under Dir) and reloads the pool, debounced, when it changes, logging the
	// result. Default false. Not for production: deploys call Runtime.Reload.
	Watch bool `json:"watch" yaml:"watch"`
}

// RecycleConfig says when a healthy worker is replaced by a fresh one. A
// zero field never recycles.
type RecycleConfig struct {
	// MaxCalls recycles a worker after this many calls. Default 0: never.
	MaxCalls int `json:"max_calls" yaml:"max_calls"`
	// MaxAge recycles a worker this long after it started. Default 0:
	// never.
	MaxAge time.Duration `json:"max_age" yaml:"max_age"`
	// MaxRSSBytes recycles a worker whose Python process's resident memory
	// (as the OS reports it) passes this many bytes. Default 0: never.
	MaxRSSBytes int64 `json:"max_rss_bytes" yaml:"max_rss_bytes"`
	// MaxGPUBytes recycles a worker whose Python process, with its descendants,
	// uses more GPU memory than this many bytes, as nvidia-smi reports it (read
	// about once a second; without nvidia-smi on PATH the pool logs a warning and
	// never recycles for it). Default 0: never. See docs/gpus.md.
	MaxGPUBytes int64 `json:"max_gpu_bytes" yaml:"max_gpu_bytes"`
}

// SlotsConfig is a pool's per-slot environment. Every worker has a slot, an
// index from 0 to Workers-1 that it keeps across restarts and recycles (the i
// of its id "<pool>-<i>"), given to its process as PYVISOR_SLOT, with the
// pool's name as PYVISOR_POOL.
type SlotsConfig struct {
	// Devices are what the slots share out, round robin: slot i gets
	// Devices[i % len(Devices)] as {{.Device}} (GPU ids "0", "1", say). Default
	// none: {{.Device}} is "".
	Devices []string `json:"devices" yaml:"devices"`
	// Env is environment whose values are Go text/template templates, run
	// for each slot with SlotData (.Slot, .Device, .Pool, .Workers) and the
	// function add: CUDA_VISIBLE_DEVICES: "{{.Device}}", PORT: "{{add 9000
	// .Slot}}". It is set on top of the pool's Env. Default none.
	Env map[string]string `json:"env" yaml:"env"`
}

// Pool returns the configuration of the pool named name, as it is in c
// (defaults are not applied), and whether there is one.
func (c Config) Pool(name string) (PoolConfig, bool) {
	for _, p := range c.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return PoolConfig{}, false
}

// WithDefaults returns c with every zero field set to its default. It does
// not change c (pools are copied) and applying it twice changes nothing more.
// Python stays "" (the bridge picks the interpreter when it starts one).
func (c Config) WithDefaults() Config {
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.Metrics.Address == "" {
		c.Metrics.Address = DefaultMetricsAddress
	}
	c.Cluster = c.Cluster.WithDefaults()
	c.Pools = slices.Clone(c.Pools)
	for i := range c.Pools {
		c.Pools[i] = c.placed(c.Pools[i].withDefaults())
	}
	if c.Dir != "" {
		c.Python = pathUnder(c.Dir, c.Python)
		if c.Environments != "" {
			c.Environments = under(c.Dir, c.Environments)
		}
	}
	return c
}

// under is path taken from base: base itself for "", path itself when absolute.
func under(base, path string) string {
	switch {
	case path == "":
		return base
	case filepath.IsAbs(path):
		return path
	}
	return filepath.Join(base, path)
}

// placed is p with its paths taken from c.Dir (p unchanged when c has no Dir).
func (c Config) placed(p PoolConfig) PoolConfig {
	if c.Dir == "" {
		return p
	}
	p.Dir = under(c.Dir, p.Dir)
	p.Python = pathUnder(c.Dir, p.Python)
	if p.Requirements != "" {
		p.Requirements = under(c.Dir, p.Requirements)
	}
	return p
}

// pathUnder is an interpreter taken from base when it is a path (has a separator); a
// command such as python3 is looked up on PATH as it is.
func pathUnder(base, python string) string {
	if strings.ContainsRune(python, filepath.Separator) {
		return under(base, python)
	}
	return python
}

func (p PoolConfig) withDefaults() PoolConfig {
	setDefault(&p.Workers, DefaultWorkers)
	setDefault(&p.StartupBatch, DefaultStartupBatch)
	setDefault(&p.MaxConcurrent, DefaultMaxConcurrent)
	setDefault(&p.QueueSize, DefaultQueueSize)
	setDefault(&p.QueueTimeout, DefaultQueueTimeout)
	setDefault(&p.Affinity, DefaultAffinity)
	setDefault(&p.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&p.LoadTimeout, DefaultLoadTimeout)
	setDefault(&p.StopTimeout, DefaultWorkerStopTimeout)
	setDefault(&p.CancelGrace, DefaultCancelGrace)
	setDefault(&p.MaxMessageBytes, DefaultMaxMessageBytes)
	m := &p.SharedMemory
	setDefault(&m.Threshold, bridge.DefaultSharedThreshold)
	setDefault(&m.MaxPayloadBytes, bridge.DefaultMaxPayload)
	setDefault(&m.PoolBytes, bridge.DefaultInputArenaBytes)
	setDefault(&m.WorkerBytes, bridge.DefaultOutputArenaBytes)
	setDefault(&m.RetainBytes, bridge.DefaultArenaRetain)
	setDefault(&m.TrimAfter, bridge.DefaultArenaTrimAfter)

	h := &p.Heartbeat
	setDefault(&h.Interval, DefaultHeartbeatInterval)
	setDefault(&h.Timeout, DefaultHeartbeatTimeout)
	setDefault(&h.MaxMissed, DefaultHeartbeatMaxMissed)
	if h.Interval > 0 { // a bad interval is reported once, by Validate
		setDefault(&h.InitialDelay, h.Interval)
	}

	setDefault(&p.Upgrade.WarmUpTimeout, DefaultWarmUpTimeout)
	setDefault(&p.Upgrade.DrainTimeout, DefaultDrainTimeout)
	setDefault(&p.Upgrade.MaxSurge, 1)

	r := &p.Restart
	if r.Within == 0 {
		r.Within = DefaultRestartWithin
		setDefault(&r.MaxRestarts, DefaultMaxRestarts)
	}
	if b := &r.Backoff; b.Initial > 0 {
		setDefault(&b.Max, max(DefaultBackoffMax, b.Initial))
		setDefault(&b.Multiplier, DefaultBackoffMultiplier)
	}
	return p
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}
