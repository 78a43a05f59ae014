package envs

import "errors"

var (
	// ErrNotBuilt: the environment a pool needs is not in the cache; `pyvisor setup
	// -config FILE` builds it.
	ErrNotBuilt = errors.New("environment not built")
	// ErrPython: the base interpreter cannot be run, or is older than 3.10.
	ErrPython = errors.New("base interpreter unusable")
	// ErrRequirements: the requirements file cannot be read.
	ErrRequirements = errors.New("requirements unreadable")
	// ErrBuild: uv could not build the environment (its output says why).
	ErrBuild = errors.New("environment build failed")
)
