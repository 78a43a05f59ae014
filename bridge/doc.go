// Package bridge owns one Python worker process end to end: it spawns the process in its
// own process group with a clean environment, waits for its handshake, forwards its
// stderr and log records through zerolog, talks to it over its channel (one bidirectional
// gRPC stream on a Unix socket by default: calls, cancellation, heartbeats, and the Go
// callbacks its tools make, WithCallback) and stops it without leaving anything behind.
//
// The package knows nothing of actors or pools: Start gives a *Process, whose Client
// runs tools. Every failure is a typed error: *StartError when a worker will not start,
// *ToolError when a Python tool raises, *ExitError (which matches ErrWorkerCrashed) when
// the process dies, and the sentinels in errors.go for contract errors.
package bridge
