package telemetry

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// DefaultServiceName is the Go side's service.name unless OTEL_SERVICE_NAME says
// otherwise; Python workers report as "pyvisor-worker".
const DefaultServiceName = "pyvisor"

// Propagator is W3C trace context plus baggage: what pyvisor puts in envelope headers
// and gRPC metadata, and what the Python worker reads.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// TracerProvider builds a tracer provider from the OpenTelemetry environment variables,
// as the specification defines them: OTEL_TRACES_EXPORTER (console, otlp or none;
// unset means none: tracing is opt-in), OTEL_EXPORTER_OTLP_ENDPOINT and _PROTOCOL,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and its argument.
// Extra span processors (an in-memory recorder, say) are added as given. Shut the
// provider down on exit: it flushes what is batched.
func TracerProvider(ctx context.Context, extra ...sdktrace.SpanProcessor) (*sdktrace.TracerProvider, error) {
	exporter, err := autoexport.NewSpanExporter(ctx, autoexport.WithFallbackSpanExporter(
		func(context.Context) (sdktrace.SpanExporter, error) { return nil, nil }))
	if err != nil {
		return nil, fmt.Errorf("telemetry: trace exporter from OTEL_TRACES_EXPORTER: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName), semconv.ProcessPID(os.Getpid())),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exporter != nil && !autoexport.IsNoneSpanExporter(exporter) {
		opts = append(opts, sdktrace.WithBatcher(exporter))
	}
	for _, p := range extra {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// MeterProvider builds a meter provider from the OpenTelemetry environment variables:
// OTEL_METRICS_EXPORTER (console, otlp, prometheus or none; unset means none: metrics
// are opt-in here too), OTEL_EXPORTER_OTLP_ENDPOINT and _PROTOCOL, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES. nil, nil when it names none. Shut it down on exit.
func MeterProvider(ctx context.Context) (*sdkmetric.MeterProvider, error) {
	reader, err := autoexport.NewMetricReader(ctx, autoexport.WithFallbackMetricReader(
		func(context.Context) (sdkmetric.Reader, error) { return nil, nil }))
	if err != nil {
		return nil, fmt.Errorf("telemetry: metric reader from OTEL_METRICS_EXPORTER: %w", err)
	}
	if reader == nil || autoexport.IsNoneMetricReader(reader) {
		return nil, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName), semconv.ProcessPID(os.Getpid())),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res)), nil
}
