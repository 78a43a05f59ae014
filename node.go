package pyvisor

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/cluster"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
	"github.com/pyvisor/pyvisor/nd"
	"github.com/pyvisor/pyvisor/telemetry"
)

// ErrNodeLost: the node running the call left the cluster or its connection broke
// before the call ended (an idempotent call was retried once on another node first).
var ErrNodeLost = cluster.ErrNodeLost

// ErrDraining: every node hosting the pool is stopping; nothing ran.
var ErrDraining = cluster.ErrDraining

// RemoteError is a call's failure on the node that ran it; it matches what it matched
// there (errors.Is, errors.As for a *ToolError).
type RemoteError = cluster.RemoteError

// WithClusterRemoteOptions passes options to protoactor's remote, the gRPC endpoint
// between nodes: TLS with remote.WithServerOptions(grpc.Creds(…)) and
// remote.WithDialOptions(grpc.WithTransportCredentials(…)). See docs/cluster.md.
func WithClusterRemoteOptions(opts ...remote.ConfigOption) Option {
	return func(o *options) { o.remote = append(o.remote, opts...) }
}

// Node is this runtime's name in its cluster, or "" without one.
func (r *Runtime) Node() string {
	if r.node == nil {
		return ""
	}
	return r.node.Name()
}

// Members are the names of the cluster's nodes as this node sees them now (itself
// included), or nil without a cluster.
func (r *Runtime) Members() []string {
	if r.node == nil {
		return nil
	}
	return r.node.Members()
}

// remoteCall reports whether a call of pool goes through the cluster: a pool this
// node does not run, or one it offers to the cluster (then it is one logical pool with
// the other nodes' of the name).
func (r *Runtime) remoteCall(pool string) bool {
	if r.node == nil {
		return false
	}
	_, local := r.pools[pool]
	return !local || r.node.Hosts(pool)
}

// startNode joins the cluster, offering the pools the config hosts.
func (r *Runtime) startNode(ctx context.Context, o options) error {
	hosted := r.cfg.Cluster.Host
	if len(hosted) == 0 {
		hosted = r.order
	}
	node, err := cluster.Start(ctx, r.cfg.Cluster, local{r}, hosted,
		cluster.WithLogger(r.log), cluster.WithTracerProvider(o.tracerProvider), cluster.WithPropagator(o.propagator),
		cluster.WithMetrics(r.metrics), cluster.WithObserver(r.observeRemote), cluster.WithRemoteOptions(o.remote...))
	if err != nil {
		return err
	}
	r.node = node
	return nil
}

// observeRemote counts a call across nodes and records its duration.
func (r *Runtime) observeRemote(pool, peer, direction string, took time.Duration, err error) {
	attrs := r.remoteAttrs(remoteKey{pool, peer, direction, outcome(err)})
	r.metrics.RemoteCalls.Add(context.Background(), 1, attrs)
	r.metrics.RemoteCallDuration.Record(context.Background(), took.Seconds(), attrs)
}

// remoteAttrs is the label set of remote calls of key, built once (as callAttrs).
func (r *Runtime) remoteAttrs(key remoteKey) metric.MeasurementOption {
	if a, ok := r.attrs.Load(key); ok {
		return a.(metric.MeasurementOption)
	}
	a := metric.WithAttributeSet(attribute.NewSet(
		attribute.String(telemetry.LabelPool, key.pool),
		attribute.String(telemetry.LabelPeer, key.peer),
		attribute.String(telemetry.LabelDirection, key.direction),
		attribute.String(telemetry.LabelOutcome, key.outcome),
	))
	r.attrs.Store(key, a)
	return a
}

type remoteKey struct{ pool, peer, direction, outcome string }

// local is the runtime as its node's gateway runs calls in it: the pools' own call
// path, without the API span and call metrics (the calling node has them).
type local struct{ r *Runtime }

func (l local) Execute(ctx context.Context, pool string, call messages.Call) (bridge.Result, string, error) {
	pid, ok := l.r.pools[pool]
	if !ok {
		return bridge.Result{}, "", ErrUnknownPool
	}
	res, err := l.r.caller.Execute(ctx, pid, &messages.Execute{Ctx: ctx, Call: call})
	if err != nil {
		return bridge.Result{}, "", err
	}
	return bridge.NewResult(res.JSON, res.Payload, res.Arrays, res.Release), res.Worker, res.Err
}

func (l local) Stream(ctx context.Context, pool string, call messages.Call) iter.Seq2[bridge.Result, error] {
	pid, ok := l.r.pools[pool]
	if !ok {
		return func(yield func(bridge.Result, error) bool) { yield(bridge.Result{}, ErrUnknownPool) }
	}
	return func(yield func(bridge.Result, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for res, err := range l.r.caller.Stream(ctx, pid, &messages.ExecuteStream{Ctx: ctx, Call: call}) {
			if !yield(res, err) || err != nil {
				return
			}
		}
	}
}

// Alloc is n bytes of pool's input arena, when the pool has one and n reaches its
// threshold.
func (l local) Alloc(ctx context.Context, pool string, n int) ([]byte, nd.Owner, error) {
	a := l.r.arenas[pool]
	if a == nil || n < l.r.thresholds[pool] {
		return nil, nil, nil
	}
	lease, err := a.Lease(ctx, uint64(n))
	if err != nil {
		return nil, nil, err
	}
	return lease.Bytes(), lease, nil
}

// Load is each pool's capacity (ready workers × max concurrent), calls in flight and
// queued.
func (l local) Load(ctx context.Context) map[string]*clusterv1.PoolLoad {
	out := map[string]*clusterv1.PoolLoad{}
	stats, err := l.r.Stats(ctx)
	if err != nil && !errors.Is(err, ErrStopped) {
		return out
	}
	conc := map[string]int{}
	for _, pc := range l.r.cfg.Pools {
		conc[pc.Name] = pc.MaxConcurrent
	}
	for _, st := range stats {
		pl := &clusterv1.PoolLoad{Queued: uint32(st.Queued)}
		for _, w := range st.Workers {
			if w.State == "ready" {
				pl.Capacity += uint32(conc[st.Pool])
			}
			pl.Busy += uint32(w.InFlight)
		}
		out[st.Pool] = pl
	}
	return out
}
