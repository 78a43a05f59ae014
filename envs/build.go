package envs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pyvisor/pyvisor/python"
)

// Build returns the environment of spec, building it first when the cache does not have
// it (reused says which). What it does goes to out: a line per step and uv's own
// output. A build that fails leaves nothing behind, and its error says what to fix.
// Builds of one environment by several processes at once take turns: the second
// finds what the first built.
func (c Cache) Build(ctx context.Context, spec Spec, out io.Writer) (_ Env, reused bool, err error) {
	in, err := identify(ctx, spec.Python)
	if err != nil {
		return Env{}, false, err
	}
	k, err := key(spec, in)
	if err != nil {
		return Env{}, false, err
	}
	if e, ok := c.built(k); ok {
		return e, true, nil
	}
	if err := os.MkdirAll(c.dir(), 0o755); err != nil {
		return Env{}, false, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	unlock, err := lock(ctx, filepath.Join(c.dir(), k+".lock"))
	if err != nil {
		return Env{}, false, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	defer unlock()
	if e, ok := c.built(k); ok { // built while this one waited
		return e, true, nil
	}
	uv, err := c.uv(ctx, spec.Python, out)
	if err != nil {
		return Env{}, false, err
	}
	e := Env{Key: k, Dir: filepath.Join(c.dir(), k), Python: in, Requirements: spec.Requirements,
		WorkerVersion: python.Version(), WorkerDigest: python.Digest()}
	fmt.Fprintf(out, "building environment %s: Python %s, %s, pyvisor-worker %s\n", k, in.Version, spec.Requirements, e.WorkerVersion)
	start := time.Now()
	if err := os.RemoveAll(e.Dir); err != nil { // what a build that did not finish left
		return Env{}, false, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(e.Dir)
		}
	}()
	if err := c.install(ctx, uv, spec, e, out); err != nil {
		return Env{}, false, err
	}
	version, digest, err := Worker(ctx, e.Interpreter())
	switch {
	case err != nil:
		return Env{}, false, fmt.Errorf("%w: %w", ErrBuild, err)
	case version != e.WorkerVersion || digest != e.WorkerDigest:
		return Env{}, false, fmt.Errorf("%w: the environment reports pyvisor-worker %s (source %s) after installing %s (source %s): do the requirements install another pyvisor-worker?",
			ErrBuild, version, digest, e.WorkerVersion, e.WorkerDigest)
	}
	e.Built = time.Now().UTC()
	if err := c.mark(e); err != nil {
		return Env{}, false, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	done = true
	fmt.Fprintf(out, "built environment %s in %.1f s\n", k, time.Since(start).Seconds())
	return e, false, nil
}

// install makes the venv of e and installs the requirements and the worker package into it.
func (c Cache) install(ctx context.Context, uv *uv, spec Spec, e Env, out io.Writer) error {
	if err := uv.run(ctx, out, "", "venv", "--quiet", "--python", spec.Python, e.Dir); err != nil {
		return fmt.Errorf("%w: create the venv: %w", ErrBuild, err)
	}
	src, err := os.MkdirTemp("", "pyvisor-worker-src-")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBuild, err)
	}
	defer os.RemoveAll(src)
	if err := python.Unpack(src); err != nil {
		return fmt.Errorf("%w: %w", ErrBuild, err)
	}
	reqs, cleanup, err := uv.requirements(ctx, spec.Requirements, out)
	if err != nil {
		return err
	}
	defer cleanup()
	// One resolution of both: a pin that conflicts with the worker's own packages is
	// reported by uv, not found at run time.
	args := []string{"pip", "install", "--python", e.Interpreter(), "-r", reqs, src}
	if err := uv.run(ctx, out, filepath.Dir(spec.Requirements), args...); err != nil {
		return fmt.Errorf("%w: uv pip install (its output is above)%s", ErrBuild, hint(err))
	}
	return nil
}

// Worker is the version and source digest of the worker package py imports.
func Worker(ctx context.Context, py string) (version, digest string, err error) {
	const probe = "import pyvisor_worker, sys\ntry:\n  from pyvisor_worker import source; d = source.digest()\nexcept Exception:\n  d = ''\nprint(pyvisor_worker.__version__, d or '-')"
	b, err := exec.CommandContext(ctx, py, "-c", probe).CombinedOutput()
	if err != nil {
		var exit interface{ ExitCode() int }
		if errors.As(err, &exit) {
			return "", "", fmt.Errorf("%s cannot import pyvisor_worker: %s", py, lastLine(b))
		}
		return "", "", fmt.Errorf("run %s: %w", py, err)
	}
	var v, d string
	if _, err := fmt.Sscan(string(b), &v, &d); err != nil {
		return "", "", fmt.Errorf("%s printed %q for pyvisor_worker's version", py, b)
	}
	if d == "-" {
		d = ""
	}
	return v, d, nil
}
