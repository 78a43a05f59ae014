package envs

import (
	"errors"
	"strings"
)

// hint says what a failed uv install most likely needs, from what uv printed.
func hint(err error) string {
	var r *RunError
	if !errors.As(err, &r) {
		return ": " + err.Error()
	}
	switch out := r.Output; {
	case strings.Contains(out, "No solution found") && strings.Contains(out, "pyvisor-worker"):
		return ": the requirements conflict with the worker package's own (grpcio, protobuf, opentelemetry): relax the pin uv names above"
	case strings.Contains(out, "No solution found"):
		return ": no versions fit the requirements together (uv's resolution is above)"
	case strings.Contains(out, "dns error") || strings.Contains(out, "Failed to fetch") || strings.Contains(out, "Could not connect") ||
		strings.Contains(out, "error sending request"):
		return ": uv could not reach the package index (PyPI, or the one set with UV_DEFAULT_INDEX / UV_INDEX_URL)"
	case strings.Contains(out, "Requires-Python") || strings.Contains(out, "requires Python"):
		return ": a package needs another Python than the pool's; name a newer one with the pool's python"
	}
	return ""
}
