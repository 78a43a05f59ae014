package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// MetricsEndpoint serves the runtime's metrics for Prometheus at /metrics, from a meter
// provider and registry of its own (nothing global). OpenMetrics is negotiated, so
// exemplars (trace ids on the call-duration histogram) are served to scrapers that ask.
type MetricsEndpoint struct {
	// Provider records the runtime's metrics; shut it down after the endpoint.
	Provider *sdkmetric.MeterProvider
	handler  http.Handler

	mu     sync.Mutex
	addr   string
	ln     net.Listener
	server *http.Server
}

// NewMetricsEndpoint prepares an endpoint for addr (host:port); nothing listens until
// Listen. Each label given is on every metric served (a cluster node's node="name").
func NewMetricsEndpoint(addr string, labels ...attribute.KeyValue) (*MetricsEndpoint, error) {
	reg := prometheus.NewRegistry()
	opts := []otelprom.Option{otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo()}
	var provider []sdkmetric.Option
	if len(labels) > 0 {
		keys := make([]attribute.Key, len(labels))
		for i, l := range labels {
			keys[i] = l.Key
		}
		opts = append(opts, otelprom.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter(keys...)))
		res, err := resource.Merge(resource.Default(), resource.NewSchemaless(labels...))
		if err != nil {
			return nil, fmt.Errorf("telemetry: metrics resource: %w", err)
		}
		provider = append(provider, sdkmetric.WithResource(res))
	}
	exporter, err := otelprom.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	return &MetricsEndpoint{
		Provider: sdkmetric.NewMeterProvider(append(provider, sdkmetric.WithReader(exporter))...),
		handler:  mux,
		addr:     addr,
	}, nil
}

// Listen binds the address; it fails clearly when the port is taken. Calling it while
// listening does nothing.
func (e *MetricsEndpoint) Listen() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		return fmt.Errorf("telemetry: metrics endpoint cannot listen on %s (is another pyvisor or exporter using the port? choose another metrics address): %w", e.addr, err)
	}
	e.ln = ln
	return nil
}

// Addr is the address listened on (the real port when the configured one was 0).
func (e *MetricsEndpoint) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln != nil {
		return e.ln.Addr().String()
	}
	return e.addr
}

// Serve serves until Close, listening first if needed; it returns why it stopped, nil
// after Close.
func (e *MetricsEndpoint) Serve() error {
	if err := e.Listen(); err != nil {
		return err
	}
	e.mu.Lock()
	srv := &http.Server{Handler: e.handler, ReadHeaderTimeout: 5 * time.Second}
	e.server = srv
	ln := e.ln
	e.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("telemetry: metrics endpoint: %w", err)
}

// Close stops serving and releases the port; a later Serve listens again.
func (e *MetricsEndpoint) Close(ctx context.Context) error {
	e.mu.Lock()
	srv, ln := e.server, e.ln
	e.server, e.ln = nil, nil
	e.mu.Unlock()
	if srv != nil {
		return srv.Shutdown(ctx)
	}
	if ln != nil {
		return ln.Close()
	}
	return nil
}
