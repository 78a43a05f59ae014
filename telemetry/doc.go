// Package telemetry holds what makes a call observable: the correlation id that travels
// with a call from the Go caller into Python (and its log fields, CallLogger), the
// OpenTelemetry set-up from OTEL_* variables (TracerProvider, Propagator), and the
// metric catalog (Metrics) with its Prometheus endpoint (MetricsEndpoint).
package telemetry
