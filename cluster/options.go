package cluster

import (
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/pyvisor/pyvisor/telemetry"
)

// Option configures Start.
type Option func(*options)

type options struct {
	log     zerolog.Logger
	tp      trace.TracerProvider
	prop    propagation.TextMapPropagator
	metrics *telemetry.Metrics
	observe Observer
	remote  []remote.ConfigOption
}

// Observer hears of every remote call once it ends: the pool, the other node, whether
// this node sent it ("out") or ran it ("in"), how long it took and its error.
type Observer func(pool, peer, direction string, took time.Duration, err error)

// WithLogger receives the node's log lines and protoactor's warnings (default: none).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithTracerProvider sets where the remote calls' spans go (default: none).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		if tp != nil {
			o.tp = tp
		}
	}
}

// WithPropagator sets how trace context and baggage cross nodes (default: none).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.prop = p }
}

// WithMetrics records the cluster's metrics (members, node losses) in m.
func WithMetrics(m *telemetry.Metrics) Option { return func(o *options) { o.metrics = m } }

// WithObserver hears of every remote call (see Observer).
func WithObserver(f Observer) Option { return func(o *options) { o.observe = f } }

// WithRemoteOptions passes options to protoactor's remote: TLS for the endpoint between
// nodes (remote.WithServerOptions(grpc.Creds(…)) and remote.WithDialOptions(…)), batch
// and queue sizes. See docs/cluster.md.
func WithRemoteOptions(opts ...remote.ConfigOption) Option {
	return func(o *options) { o.remote = append(o.remote, opts...) }
}

func defaults() options {
	return options{log: zerolog.Nop(), tp: tracenoop.NewTracerProvider(), observe: func(string, string, string, time.Duration, error) {}}
}
