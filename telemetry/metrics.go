package telemetry

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Label keys. Every value is bounded: pools and worker slots come from the
// configuration, tools from the workers' registries, outcomes, reasons and states from
// the fixed lists in docs/metrics.md.
const (
	LabelPool    = "pool"
	LabelWorker  = "worker"
	LabelTool    = "tool"
	LabelOutcome = "outcome"
	LabelReason  = "reason"
	LabelState   = "state"
	LabelVersion = "version"
	// LabelCallback names a Go callback, as registered (pyvisor.WithCallback).
	LabelCallback = "callback"
	// LabelNode names a cluster node (Config.Cluster.Node): on every metric a node
	// serves; LabelPeer is the other node of a remote call, LabelDirection "out" (this
	// node sent it) or "in" (it ran it for the peer).
	LabelNode      = "node"
	LabelPeer      = "peer"
	LabelDirection = "direction"
)

// Metrics is pyvisor's metric catalog: every instrument, created in one place. The
// Prometheus names (what docs/metrics.md lists) follow from the OpenTelemetry names and
// units: "pyvisor.calls" with unit "{call}" is pyvisor_calls_total, "s" adds _seconds,
// "By" adds _bytes.
type Metrics struct {
	HeartbeatPings      metric.Int64Counter     // pool, worker
	HeartbeatPongs      metric.Int64Counter     // pool, worker
	HeartbeatFailures   metric.Int64Counter     // pool, worker, reason
	HeartbeatLatency    metric.Float64Histogram // pool, worker
	HeartbeatMisses     metric.Int64Gauge       // pool, worker: consecutive misses now
	WorkerStarts        metric.Int64Counter     // pool, worker, outcome
	WorkerStartup       metric.Float64Histogram // pool, worker: spawn to handshake
	WorkerExits         metric.Int64Counter     // pool, worker, reason
	WorkerRestarts      metric.Int64Counter     // pool, worker, reason
	Workers             metric.Int64Gauge       // pool, state
	Sessions            metric.Int64Gauge       // pool
	Calls               metric.Int64Counter     // pool, tool, outcome
	CallDuration        metric.Float64Histogram // pool, tool, outcome (exemplars: trace ids)
	QueueDepth          metric.Int64Gauge       // pool
	QueueWait           metric.Float64Histogram // pool
	Rejections          metric.Int64Counter     // pool, reason
	SupervisorRestarts  metric.Int64Counter     // pool: restarts its workers' supervisor made
	SupervisorEscalated metric.Int64Counter     // pool: times it gave up (intensity exceeded)
	Callbacks           metric.Int64Counter     // pool, callback, outcome
	CallbackDuration    metric.Float64Histogram // pool, callback, outcome
	ClusterMembers      metric.Int64Gauge       // nodes in the cluster, as this node sees it
	NodeLosses          metric.Int64Counter     // nodes this node saw lost (left or connection broken)
	RemoteCalls         metric.Int64Counter     // pool, peer, direction, outcome
	RemoteCallDuration  metric.Float64Histogram // pool, peer, direction, outcome
	PayloadBytes        metric.Int64Counter     // pool, direction (in, out), transport (shared_memory, frame)

	meter metric.Meter
}

// Bucket boundaries, in seconds.
var (
	callBuckets      = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	heartbeatBuckets = []float64{0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	startupBuckets   = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// NewMetrics creates the catalog's instruments on mp (a no-op provider gives no-op
// instruments: recording is then free).
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{meter: mp.Meter("github.com/pyvisor/pyvisor")}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, buckets []float64) metric.Float64Histogram {
		h, err := m.meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	gauge := func(name, unit, desc string) metric.Int64Gauge {
		g, err := m.meter.Int64Gauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	m.HeartbeatPings = counter("pyvisor.heartbeat.pings", "{ping}", "Heartbeat pings sent to workers.")
	m.HeartbeatPongs = counter("pyvisor.heartbeat.pongs", "{pong}", "Heartbeat pings answered in time.")
	m.HeartbeatFailures = counter("pyvisor.heartbeat.failures", "{ping}", "Heartbeat pings not answered in time, by reason.")
	m.HeartbeatLatency = histogram("pyvisor.heartbeat.latency", "Round trip of answered heartbeat pings.", heartbeatBuckets)
	m.HeartbeatMisses = gauge("pyvisor.heartbeat.consecutive_misses", "{ping}", "Heartbeats missed in a row now; the worker fails at the configured maximum.")
	m.WorkerStarts = counter("pyvisor.worker.starts", "{start}", "Python worker process starts, by outcome.")
	m.WorkerStartup = histogram("pyvisor.worker.startup.duration", "Spawn to handshake of Python worker processes that started.", startupBuckets)
	m.WorkerExits = counter("pyvisor.worker.exits", "{exit}", "Python worker processes that ended, by reason.")
	m.WorkerRestarts = counter("pyvisor.worker.restarts", "{restart}", "Worker restarts by their supervisor, by reason.")
	m.Workers = gauge("pyvisor.workers", "{worker}", "Worker slots by state.")
	m.Sessions = gauge("pyvisor.sessions", "{session}", "Sessions a pool holds open in its workers.")
	m.Calls = counter("pyvisor.calls", "{call}", "Tool calls, by tool and outcome.")
	m.CallDuration = histogram("pyvisor.call.duration", "Tool call duration as the caller sees it, queue included.", callBuckets)
	m.QueueDepth = gauge("pyvisor.queue.depth", "{call}", "Calls waiting for a worker.")
	m.QueueWait = histogram("pyvisor.queue.wait", "Time calls waited for a worker.", callBuckets)
	m.Rejections = counter("pyvisor.queue.rejections", "{call}", "Calls refused without running, by reason.")
	m.SupervisorRestarts = counter("pyvisor.supervisor.restarts", "{restart}", "Restarts made by a pool's worker supervisor.")
	m.SupervisorEscalated = counter("pyvisor.supervisor.escalations", "{escalation}", "Times a pool's worker supervisor exceeded its restart intensity and gave up.")
	m.Callbacks = counter("pyvisor.callbacks", "{callback}", "Go callbacks called by Python tools, by callback and outcome.")
	m.CallbackDuration = histogram("pyvisor.callback.duration", "How long Go callbacks ran.", callBuckets)
	m.ClusterMembers = gauge("pyvisor.cluster.members", "{node}", "Nodes in the cluster, as this node's provider sees it.")
	m.NodeLosses = counter("pyvisor.cluster.node_losses", "{node}", "Nodes this node saw lost: left the cluster or their connection broke.")
	m.RemoteCalls = counter("pyvisor.remote.calls", "{call}", "Calls across nodes, by pool, peer node, direction (out: sent by this node; in: run for another) and outcome.")
	m.RemoteCallDuration = histogram("pyvisor.remote.call.duration", "Duration of calls across nodes, as each side sees it.", callBuckets)
	m.PayloadBytes = counter("pyvisor.payload", "By", "Payload bytes of calls, by direction (in: to the tool, out: returned or streamed) and transport (shared_memory or frame).")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: create instruments: %w", err)
	}
	return m, nil
}

// ObserveSharedMemory registers observe as the source of each pool's shared memory in
// use (pyvisor_shared_memory_in_use_bytes and pyvisor_shared_memory_regions: the pool's
// input arena, payloads of calls in flight and Buffers not yet released); the returned
// func unregisters it. observe runs at collection time.
func (m *Metrics) ObserveSharedMemory(observe func(record func(bytes int64, regions int64, attrs ...attribute.KeyValue))) (func() error, error) {
	b, err := m.meter.Int64ObservableGauge("pyvisor.shared_memory.in_use", metric.WithUnit("By"),
		metric.WithDescription("Bytes of a pool's shared memory allocated to payloads now."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: shared memory gauge: %w", err)
	}
	n, err := m.meter.Int64ObservableGauge("pyvisor.shared_memory.regions", metric.WithUnit("{region}"),
		metric.WithDescription("Regions (payloads) of a pool's shared memory in use now."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: shared memory gauge: %w", err)
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		observe(func(bytes, regions int64, attrs ...attribute.KeyValue) {
			o.ObserveInt64(b, bytes, metric.WithAttributes(attrs...))
			o.ObserveInt64(n, regions, metric.WithAttributes(attrs...))
		})
		return nil
	}, b, n)
	if err != nil {
		return nil, fmt.Errorf("telemetry: shared memory gauge callback: %w", err)
	}
	return reg.Unregister, nil
}

// ObserveVersions registers observe as the source of pyvisor_worker_code_info: 1 for
// each serving worker, labelled with the version of the tool code it runs (Reload changes
// it); the returned func unregisters it. observe runs at collection time and must be safe
// for concurrent use.
func (m *Metrics) ObserveVersions(observe func(record func(attrs ...attribute.KeyValue))) (func() error, error) {
	g, err := m.meter.Int64ObservableGauge("pyvisor.worker.code.info",
		metric.WithDescription("1 for each serving worker, labelled with the version of the tool code it runs."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: code version gauge: %w", err)
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		observe(func(attrs ...attribute.KeyValue) { o.ObserveInt64(g, 1, metric.WithAttributes(attrs...)) })
		return nil
	}, g)
	if err != nil {
		return nil, fmt.Errorf("telemetry: code version gauge callback: %w", err)
	}
	return reg.Unregister, nil
}

// ObserveMemory registers observe as the source of the Python processes' resident
// memory (pyvisor_worker_memory_resident_bytes); the returned func unregisters it.
// observe runs at collection time and must be safe for concurrent use.
func (m *Metrics) ObserveMemory(observe func(record func(bytes int64, attrs ...attribute.KeyValue))) (func() error, error) {
	g, err := m.meter.Int64ObservableGauge("pyvisor.worker.memory.resident", metric.WithUnit("By"),
		metric.WithDescription("Resident memory of each worker's Python process, read from the OS."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: memory gauge: %w", err)
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		observe(func(bytes int64, attrs ...attribute.KeyValue) {
			o.ObserveInt64(g, bytes, metric.WithAttributes(attrs...))
		})
		return nil
	}, g)
	if err != nil {
		return nil, fmt.Errorf("telemetry: memory gauge callback: %w", err)
	}
	return reg.Unregister, nil
}
