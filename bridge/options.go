package bridge

import (
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/python"
)

// Defaults of the options below.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultLoadTimeout      = 10 * time.Minute
	DefaultStopTimeout      = 5 * time.Second
	DefaultMaxMessageBytes  = 16 << 20
	DefaultCrashGrace       = 2 * time.Second
	DefaultCancelGrace      = 5 * time.Second
)

// sourceDigestEnv passes python.Digest to the worker, which compares it with the digest
// stamped into its package by setup.
const sourceDigestEnv = "PYVISOR_SOURCE_DIGEST"

// Option configures Start.
type Option func(*config)

type config struct {
	python           string
	tools            []string
	workerID         string
	dir              string
	runtimeDir       string
	env              map[string]string
	handshakeTimeout time.Duration
	loadTimeout      time.Duration
	onLoading        func(pid int)
	stopTimeout      time.Duration
	maxMessageBytes  int
	tcp              bool
	logger           zerolog.Logger
	tracerProvider   trace.TracerProvider
	propagator       propagation.TextMapPropagator
	traceHeartbeats  bool
	spanSink         func(PythonSpan)
	cancelGrace      time.Duration
	stuck            func(tool string)
	callbacks        map[string]CallbackFunc
	observeCallback  CallbackObserver
	shared           SharedMemory
}

func newConfig(opts []Option) (config, error) {
	c := config{
		handshakeTimeout: DefaultHandshakeTimeout,
		loadTimeout:      DefaultLoadTimeout,
		stopTimeout:      DefaultStopTimeout,
		maxMessageBytes:  DefaultMaxMessageBytes,
		logger:           zerolog.Nop(),
		runtimeDir:       os.TempDir(),
		cancelGrace:      DefaultCancelGrace,
		workerID:         "worker",
	}
	for _, o := range opts {
		o(&c)
	}
	c.shared = c.shared.withDefaults()
	if c.tracerProvider == nil {
		c.tracerProvider = otel.GetTracerProvider()
	}
	if c.propagator == nil {
		c.propagator = otel.GetTextMapPropagator()
	}
	if c.spanSink != nil {
		c.env = withEnv(c.env, "PYVISOR_TRACE_STDERR", "1")
	}
	if c.traceHeartbeats {
		c.env = withEnv(c.env, "PYVISOR_TRACE_HEARTBEATS", "1")
	}
	for name := range c.callbacks {
		if err := CheckCallbackName(name); err != nil {
			return c, fmt.Errorf("bridge: %w", err)
		}
	}
	for name, fn := range c.callbacks {
		if fn == nil {
			return c, fmt.Errorf("bridge: callback %q: its function is nil", name)
		}
	}
	if len(c.callbacks) > 0 {
		c.env = withEnv(c.env, callbacksEnv, callbacksJSON(c.callbacks))
	}
	// A worker package stamped by another pyvisor's setup refuses to serve (exit 5).
	c.env = withEnv(c.env, sourceDigestEnv, python.Digest())
	if c.python == "" {
		c.python = Interpreter()
	}
	switch {
	case len(c.tools) == 0:
		return c, fmt.Errorf("bridge: no tools module: pass WithTools(\"your.module\")")
	case c.handshakeTimeout <= 0:
		return c, fmt.Errorf("bridge: handshake timeout must be positive, got %v", c.handshakeTimeout)
	case c.loadTimeout <= 0:
		return c, fmt.Errorf("bridge: load timeout must be positive, got %v", c.loadTimeout)
	case c.stopTimeout <= 0:
		return c, fmt.Errorf("bridge: stop timeout must be positive, got %v", c.stopTimeout)
	case c.cancelGrace <= 0:
		return c, fmt.Errorf("bridge: cancel grace must be positive, got %v", c.cancelGrace)
	case c.maxMessageBytes <= 0:
		return c, fmt.Errorf("bridge: max message bytes must be positive, got %d", c.maxMessageBytes)
	}
	return c, nil
}

// WithPython sets the interpreter (default: see Interpreter).
func WithPython(path string) Option { return func(c *config) { c.python = path } }

// WithTools adds Python modules whose @tool functions the worker serves.
func WithTools(modules ...string) Option {
	return func(c *config) { c.tools = append(c.tools, modules...) }
}

// WithWorkerID names the worker in logs and in the worker itself (default "worker").
func WithWorkerID(id string) Option { return func(c *config) { c.workerID = id } }

// WithCodeVersion labels the tool code the worker loads (a release name, a commit): it is
// the worker's CodeVersion instead of the hash of its tools modules' files.
func WithCodeVersion(label string) Option {
	return WithEnv(codeVersionEnv, label)
}

// codeVersionEnv carries WithCodeVersion's label to the worker (pyvisor_worker.version).
const codeVersionEnv = "PYVISOR_CODE_VERSION"

// WithDir sets the worker's working directory (default: the host's).
func WithDir(dir string) Option { return func(c *config) { c.dir = dir } }

// WithRuntimeDir sets where the worker's private socket directory is created
// (default os.TempDir()). Unix socket paths are limited to about 100 bytes.
func WithRuntimeDir(dir string) Option { return func(c *config) { c.runtimeDir = dir } }

// WithEnv adds an environment variable to the worker's otherwise clean environment
// (for example PYTHONPATH for your tools).
func WithEnv(key, value string) Option {
	return func(c *config) { c.env = withEnv(c.env, key, value) }
}

func withEnv(env map[string]string, key, value string) map[string]string {
	if env == nil {
		env = map[string]string{}
	}
	env[key] = value
	return env
}

// WithHandshakeTimeout bounds the time from spawn to the handshake line (default 10 s):
// the interpreter's start and the worker package's import, not the tools modules'.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(c *config) { c.handshakeTimeout = d }
}

// WithLoadTimeout bounds the load phase, from the handshake to the tools modules
// imported (default DefaultLoadTimeout, 10 minutes: a model's import may take that).
func WithLoadTimeout(d time.Duration) Option {
	return func(c *config) { c.loadTimeout = d }
}

// WithLoading is called with the process's pid once its handshake is in and its tools
// modules are loading: until Start returns, the worker is loading.
func WithLoading(f func(pid int)) Option { return func(c *config) { c.onLoading = f } }

// WithStopTimeout bounds a graceful stop before the process group is killed (default 5 s).
func WithStopTimeout(d time.Duration) Option { return func(c *config) { c.stopTimeout = d } }

// WithMaxMessageBytes caps request and result size on both sides (default 16 MiB).
func WithMaxMessageBytes(n int) Option { return func(c *config) { c.maxMessageBytes = n } }

// WithTCP serves the worker on 127.0.0.1 instead of a Unix socket; every call then
// carries a per-worker secret token, passed to the worker by environment.
func WithTCP() Option { return func(c *config) { c.tcp = true } }

// WithLogger receives the bridge's own log lines and the worker's forwarded stderr
// (default zerolog.Nop()).
func WithLogger(l zerolog.Logger) Option { return func(c *config) { c.logger = l } }

// WithTracerProvider sets the tracer provider (default: the OpenTelemetry global). A
// noop.TracerProvider turns the gRPC client instrumentation off altogether.
// nil keeps the default.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracerProvider = tp }
}

// WithPropagator sets how trace context and baggage travel in gRPC metadata (default:
// the OpenTelemetry global).
// nil keeps the default.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

// WithTraceHeartbeats traces heartbeat pings too (off by default: they would drown the
// traces of calls).
func WithTraceHeartbeats(on bool) Option { return func(c *config) { c.traceHeartbeats = on } }

// WithSpanSink makes the worker write each span it ends as a JSON line on stderr
// ({"pyvisor_span": {...}}), which the bridge decodes and hands to sink instead of
// logging it (a line that does not decode is logged). The demo uses it to print Go and
// Python spans as one tree. sink is called from the goroutine reading stderr.
func WithSpanSink(sink func(PythonSpan)) Option {
	return func(c *config) { c.spanSink = sink }
}

// WithCancelGrace is how long a call's Python body may go on after its cancellation
// (its caller's deadline or cancellation) before it counts as stuck (default 5 s).
func WithCancelGrace(d time.Duration) Option { return func(c *config) { c.cancelGrace = d } }

// WithStuckBody is called (from a timer goroutine) when a cancelled call's Python body
// is still running WithCancelGrace after its cancellation: a sync tool that ignores
// ctx.cancelled, an async tool that swallows CancelledError, or a wedged event loop. The
// worker is then unhealthy; the bridge does nothing else about it.
func WithStuckBody(f func(tool string)) Option { return func(c *config) { c.stuck = f } }
