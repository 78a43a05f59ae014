// Package envs builds and finds the Python environments of pools: one venv for each
// distinct set of requirements, Python version and worker package, built with uv into
// a cache and reused until one of the three changes.
//
// A pool that names requirements (PoolConfig.Requirements: a requirements file, a
// pyproject.toml or a uv.lock) runs in the environment Cache.Find returns for them;
// `pyvisor setup -config FILE` builds the missing ones with Cache.Build. Two pools whose
// requirements pin different versions of one package get two environments, side by
// side. Every environment holds the worker package embedded in the Go module.
//
// uv comes from PyPI, as a package installed into a venv of its own in the cache (or
// $PYVISOR_UV names a uv binary to use instead). See docs/environments.md.
package envs
