// Package telemetry holds what makes a call observable: for now the correlation id that
// travels with a call from the Go caller into Python (tracing and metrics join it in
// later issues).
package telemetry
