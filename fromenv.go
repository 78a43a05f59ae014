package pyvisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/pyvisor/pyvisor/telemetry"
)

// WithTelemetryFromEnv is the one switch for an application with no OpenTelemetry set-up
// of its own: the runtime builds its tracer provider from OTEL_TRACES_EXPORTER (console,
// otlp, none) and its meter provider from OTEL_METRICS_EXPORTER (console, otlp,
// prometheus, none), with the OTEL_EXPORTER_OTLP_*, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER variables, propagates W3C trace
// context and baggage, and shuts both down (flushing them) at Stop. The Python workers
// read the same variables and export their own spans alike, into the same traces.
// WithTracerProvider, WithMeterProvider and WithPropagator, given too, win.
func WithTelemetryFromEnv() Option { return func(o *options) { o.fromEnv = true } }

// telemetryFromEnv fills what WithTelemetryFromEnv asks for and returns what shuts it
// down.
func (o *options) telemetryFromEnv(ctx context.Context) (shutdown func(context.Context) error, err error) {
	var closers []func(context.Context) error
	shutdown = func(ctx context.Context) error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c(ctx))
		}
		return errors.Join(errs...)
	}
	if !o.fromEnv {
		return shutdown, nil
	}
	if !o.tracerSet {
		tp, err := telemetry.TracerProvider(ctx)
		if err != nil {
			return nil, fmt.Errorf("pyvisor: start: %w", err)
		}
		o.tracerProvider = tp
		closers = append(closers, tp.Shutdown)
	}
	if !o.meterSet {
		mp, err := telemetry.MeterProvider(ctx)
		if err != nil {
			_ = shutdown(ctx)
			return nil, fmt.Errorf("pyvisor: start: %w", err)
		}
		if mp != nil {
			o.meterProvider = mp
			closers = append(closers, mp.Shutdown)
		}
	}
	if !o.propagatorSet {
		o.propagator = telemetry.Propagator()
	}
	return shutdown, nil
}
