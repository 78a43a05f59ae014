package main

import (
	_ "embed"
	"fmt"
	"os"
	"slices"

	"github.com/pyvisor/pyvisor"
)

// examplesModule is the Python module whose tools the scenario calls.
const examplesModule = "pyvisor_worker.examples"

//go:embed default.yaml
var defaultConfig []byte

// loadConfig returns the demo's configuration: the file at path (the embedded default
// when path is ""), then the PYVISOR_* environment overrides, then the -workers flag
// (when workers > 0). The scenario runs against the first pool, which must serve the
// example tools.
func loadConfig(path string, workers int) (pyvisor.Config, error) {
	var cfg pyvisor.Config
	var err error
	if path == "" {
		cfg, err = pyvisor.ParseConfig("default.yaml", defaultConfig)
	} else {
		cfg, err = pyvisor.LoadConfig(path)
	}
	if err != nil {
		return cfg, err
	}
	if cfg, err = cfg.WithEnv(os.LookupEnv); err != nil {
		return cfg, err
	}
	if len(cfg.Pools) == 0 {
		return cfg, fmt.Errorf("%w: pools: the demo needs at least one pool", pyvisor.ErrInvalidConfig)
	}
	if workers > 0 {
		cfg.Pools[0].Workers = workers
	}
	if !slices.Contains(cfg.Pools[0].Tools, examplesModule) {
		return cfg, fmt.Errorf("%w: pools[0].tools: the demo calls the tools of %s, which pool %q does not serve",
			pyvisor.ErrInvalidConfig, examplesModule, cfg.Pools[0].Name)
	}
	cfg = cfg.WithDefaults()
	return cfg, cfg.Validate()
}
