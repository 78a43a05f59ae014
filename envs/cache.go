package envs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pyvisor/pyvisor/python"
)

// EnvCache names the cache folder in the environment ($PYVISOR_ENVIRONMENTS), over the
// configuration's.
const EnvCache = "PYVISOR_ENVIRONMENTS"

// markerFile is written last into a built environment: without it, the folder is a build
// that did not finish.
const markerFile = "pyvisor-env.json"

// Cache is a folder of built environments, each in a sub-folder named by its key.
type Cache struct {
	// Dir is the cache's folder. "": DefaultDir.
	Dir string
}

// DefaultDir is the cache folder of a configuration that names none: $PYVISOR_ENVIRONMENTS,
// else pyvisor/environments in the user's cache folder ($XDG_CACHE_HOME or ~/.cache).
func DefaultDir() string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "pyvisor", "environments")
	}
	return filepath.Join(os.TempDir(), "pyvisor-environments")
}

func (c Cache) dir() string {
	if c.Dir == "" {
		return DefaultDir()
	}
	return c.Dir
}

// Env is a built environment.
type Env struct {
	Key    string      `json:"key"`
	Dir    string      `json:"-"`
	Python Interpreter `json:"python"`
	// Requirements is the file it was built from.
	Requirements  string    `json:"requirements"`
	WorkerVersion string    `json:"worker_version"`
	WorkerDigest  string    `json:"worker_digest"`
	Built         time.Time `json:"built"`
}

// Interpreter is the environment's python, which workers run.
func (e Env) Interpreter() string { return filepath.Join(e.Dir, "bin", "python") }

// Find returns the built environment of spec, or an error matching ErrNotBuilt that says
// which one is missing and how to build it. It runs spec.Python once, to learn its
// version, and reads the requirements: nothing is installed.
func (c Cache) Find(ctx context.Context, spec Spec) (Env, error) {
	in, err := identify(ctx, spec.Python)
	if err != nil {
		return Env{}, err
	}
	k, err := key(spec, in)
	if err != nil {
		return Env{}, err
	}
	if e, ok := c.built(k); ok {
		return e, nil
	}
	return Env{}, fmt.Errorf("%w: %s with Python %s and pyvisor-worker %s (key %s) is not in %s: run `%s -config FILE` to build it",
		ErrNotBuilt, spec.Requirements, in.Version, python.Version(), k, c.dir(), SetupCommand)
}

// SetupCommand is how messages name the command that builds environments.
const SetupCommand = "go run github.com/pyvisor/pyvisor/cmd/pyvisor setup"

// built reads the marker of environment k.
func (c Cache) built(k string) (Env, bool) {
	dir := filepath.Join(c.dir(), k)
	b, err := os.ReadFile(filepath.Join(dir, markerFile))
	if err != nil {
		return Env{}, false
	}
	var e Env
	if json.Unmarshal(b, &e) != nil || e.Key != k {
		return Env{}, false
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "python")); err != nil {
		return Env{}, false
	}
	e.Dir = dir
	return e, true
}

// mark writes e's marker, last of its build, atomically.
func (c Cache) mark(e Env) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(e.Dir, markerFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(e.Dir, markerFile))
}
