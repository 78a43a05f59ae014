package bridge

import (
	"os"
	"sort"
	"strings"
)

// passedThrough are the host variables a worker inherits; everything else is left out so
// a worker's behaviour does not depend on the host's environment by accident.
var passedThrough = []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}

// passedThroughPrefixes: OpenTelemetry's own variables mean the same on both sides.
var passedThroughPrefixes = []string{"OTEL_"}

// WorkerEnv is the environment a worker process gets: the pass-through variables, then
// extra (what WithEnv adds). Nothing else of the host's environment reaches it.
func WorkerEnv(extra map[string]string) []string {
	env := map[string]string{"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
	for _, k := range passedThrough {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		for _, p := range passedThroughPrefixes {
			if strings.HasPrefix(k, p) {
				env[k] = v
			}
		}
	}
	for k, v := range extra {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
