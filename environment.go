package pyvisor

import (
	"context"
	"fmt"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/envs"
)

// DefaultBasePython is the Python a pool's environment is built on when neither the pool
// nor the configuration names one.
const DefaultBasePython = "python3"

// Environment is the environment pool p asks for, and whether it asks for one (it names
// Requirements). p is one of c.Pools, or any pool placed as if it were: its paths are
// taken from c.Dir.
func (c Config) Environment(p PoolConfig) (envs.Cache, envs.Spec, bool) {
	p = c.placed(p)
	c = c.WithDefaults()
	if p.Requirements == "" {
		return envs.Cache{}, envs.Spec{}, false
	}
	base := DefaultBasePython
	switch {
	case p.Python != "":
		base = p.Python
	case c.Python != "":
		base = c.Python
	}
	return envs.Cache{Dir: c.Environments}, envs.Spec{Python: base, Requirements: p.Requirements}, true
}

// Interpreter is the Python the workers of pool p (as Environment takes it) run: its built environment's when
// it names Requirements (an error matching ErrEnvironmentNotBuilt says how to build a
// missing one), else p.Python, else c.Python, else the nearest .venv above c.Dir (or the
// working directory), else python3.
func (c Config) Interpreter(ctx context.Context, p PoolConfig) (string, error) {
	if cache, spec, ok := c.Environment(p); ok {
		e, err := cache.Find(ctx, spec)
		if err != nil {
			return "", fmt.Errorf("pool %q: %w", p.Name, err)
		}
		return e.Interpreter(), nil
	}
	p = c.placed(p)
	c = c.WithDefaults()
	switch {
	case p.Python != "":
		return p.Python, nil
	case c.Python != "":
		return c.Python, nil
	case c.Dir != "":
		return bridge.InterpreterFrom(c.Dir), nil
	}
	return bridge.Interpreter(), nil
}
