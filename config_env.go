package pyvisor

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/pyvisor/pyvisor/envs"
)

// Environment variables that override the configuration (see WithEnv).
const (
	EnvPython       = "PYVISOR_PYTHON"        // Config.Python
	EnvEnvironments = envs.EnvCache           // Config.Environments
	EnvWorkers      = "PYVISOR_WORKERS"       // PoolConfig.Workers, every pool
	EnvHeartbeat    = "PYVISOR_HEARTBEAT"     // PoolConfig.Heartbeat.Enabled, every pool
	EnvQueueSize    = "PYVISOR_QUEUE_SIZE"    // PoolConfig.QueueSize, every pool
	EnvQueueTimeout = "PYVISOR_QUEUE_TIMEOUT" // PoolConfig.QueueTimeout, every pool
	EnvMetricsAddr  = "PYVISOR_METRICS_ADDR"  // Metrics.Address, and Metrics.Enabled = true
)

// WithEnv returns c with the PYVISOR_* overrides that lookup finds applied
// (pass os.LookupEnv; tests pass a map's lookup). An override replaces the
// field's value as a file would set it, in every pool for the pool fields:
//
//	PYVISOR_PYTHON         python                     a path or command
//	PYVISOR_ENVIRONMENTS   environments               a folder
//	PYVISOR_WORKERS        pools[*].workers           an integer
//	PYVISOR_HEARTBEAT      pools[*].heartbeat.enabled true or false (strconv.ParseBool)
//	PYVISOR_QUEUE_SIZE     pools[*].queue_size        an integer (-1: no queue)
//	PYVISOR_QUEUE_TIMEOUT  pools[*].queue_timeout     a duration such as "10s"
//	PYVISOR_METRICS_ADDR   metrics.address (and metrics.enabled: true)  host:port
//
// A variable set to the empty string is ignored. A malformed value is an
// error naming the variable, matching ErrInvalidConfig; every malformed
// variable is reported (errors.Join) and c is returned unchanged. Ranges are
// checked by Validate. WithEnv does not change c (pools are copied).
func (c Config) WithEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		return v, ok && v != ""
	}
	var errs []error
	bad := func(name, value, want string, cause error) {
		errs = append(errs, fmt.Errorf("%w: %s=%q: want %s: %w", ErrInvalidConfig, name, value, want, cause))
	}

	out := c
	out.Pools = slices.Clone(c.Pools)
	if v, ok := get(EnvPython); ok {
		out.Python = v
	}
	if v, ok := get(EnvEnvironments); ok {
		out.Environments = v
	}
	if v, ok := get(EnvMetricsAddr); ok {
		out.Metrics = MetricsConfig{Enabled: true, Address: v}
	}
	if v, ok := get(EnvWorkers); ok {
		if n, err := strconv.Atoi(v); err != nil {
			bad(EnvWorkers, v, "an integer", err)
		} else {
			forEachPool(out.Pools, func(p *PoolConfig) { p.Workers = n })
		}
	}
	if v, ok := get(EnvHeartbeat); ok {
		if b, err := strconv.ParseBool(v); err != nil {
			bad(EnvHeartbeat, v, "true or false", err)
		} else {
			forEachPool(out.Pools, func(p *PoolConfig) { p.Heartbeat.Enabled = b })
		}
	}
	if v, ok := get(EnvQueueSize); ok {
		if n, err := strconv.Atoi(v); err != nil {
			bad(EnvQueueSize, v, "an integer", err)
		} else {
			forEachPool(out.Pools, func(p *PoolConfig) { p.QueueSize = n })
		}
	}
	if v, ok := get(EnvQueueTimeout); ok {
		if d, err := time.ParseDuration(v); err != nil {
			bad(EnvQueueTimeout, v, `a duration such as "10s"`, err)
		} else {
			forEachPool(out.Pools, func(p *PoolConfig) { p.QueueTimeout = d })
		}
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return out, nil
}

func forEachPool(pools []PoolConfig, set func(*PoolConfig)) {
	for i := range pools {
		set(&pools[i])
	}
}
