package envs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// UVVersion is the uv a cache installs from PyPI for its builds.
const UVVersion = "0.13.10"

// EnvUV names a uv binary to use instead of installing one ($PYVISOR_UV).
const EnvUV = "PYVISOR_UV"

// uv runs one uv binary with the cache's settings.
type uv struct {
	bin   string
	cache string // UV_CACHE_DIR: downloads and wheels, shared by every environment
}

// uv returns the cache's uv: $PYVISOR_UV, else the one installed from PyPI into
// .uv/UVVersion of the cache, installed with base (its pip) the first time.
func (c Cache) uv(ctx context.Context, base string, out io.Writer) (*uv, error) {
	u := &uv{bin: os.Getenv(EnvUV), cache: filepath.Join(c.dir(), ".uv-cache")}
	if u.bin != "" {
		return u, nil
	}
	dir := filepath.Join(c.dir(), ".uv", UVVersion)
	u.bin = filepath.Join(dir, "bin", "uv")
	if _, err := os.Stat(u.bin); err == nil {
		return u, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	unlock, err := lock(ctx, dir+".lock")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	defer unlock()
	if _, err := os.Stat(u.bin); err == nil { // installed while this one waited
		return u, nil
	}
	fmt.Fprintf(out, "installing uv %s from PyPI into %s\n", UVVersion, dir)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	if err := Run(ctx, out, "", nil, base, "-m", "venv", tmp); err != nil {
		return nil, fmt.Errorf("%w: create a venv for uv with %s: %w (on Debian: apt install python3-venv; or set %s to a uv binary)", ErrBuild, base, err, EnvUV)
	}
	if err := Run(ctx, out, "", nil, filepath.Join(tmp, "bin", "python"), "-m", "pip", "install",
		"--disable-pip-version-check", "--progress-bar", "off", "--quiet", "uv=="+UVVersion); err != nil {
		return nil, fmt.Errorf("%w: pip install uv==%s: %w (is PyPI, or PIP_INDEX_URL's mirror, reachable? Or set %s to a uv binary)", ErrBuild, UVVersion, err, EnvUV)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	// The venv's scripts name its folder: uv's own entry point is the binary, which
	// does not.
	return u, nil
}

// run runs uv with args in dir ("" for here), its output to out.
func (u *uv) run(ctx context.Context, out io.Writer, dir string, args ...string) error {
	// uv's own temporary files (build environments, and the locks it leaves) go to
	// the cache, not the system's temporary folder.
	tmp := filepath.Join(u.cache, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	env := append(os.Environ(), "UV_PYTHON_DOWNLOADS=never", "UV_NO_CONFIG=1", "TMPDIR="+tmp)
	if os.Getenv("UV_CACHE_DIR") == "" {
		env = append(env, "UV_CACHE_DIR="+u.cache)
	}
	return Run(ctx, out, dir, env, u.bin, args...)
}

// requirements is the requirements file to install for path: path itself, or for a
// uv.lock the pinned list uv exports from it (removed by cleanup).
func (u *uv) requirements(ctx context.Context, path string, out io.Writer) (file string, cleanup func(), err error) {
	if filepath.Base(path) != "uv.lock" {
		return path, func() {}, nil
	}
	f, err := os.CreateTemp("", "pyvisor-requirements-*.txt")
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	f.Close()
	cleanup = func() { os.Remove(f.Name()) }
	err = u.run(ctx, out, filepath.Dir(path), "export", "--frozen", "--no-hashes", "--no-emit-project",
		"--no-header", "--format", "requirements-txt", "--output-file", f.Name())
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("%w: uv export of %s (its output is above): %w", ErrBuild, path, err)
	}
	return f.Name(), cleanup, nil
}

// Run runs name with args in dir ("" for here) with env (nil for this process's), its
// output going to out once; a failure is a *RunError that keeps the output, for hints.
func Run(ctx context.Context, out io.Writer, dir string, env []string, name string, args ...string) error {
	var output bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout = io.MultiWriter(out, &output)
	cmd.Stderr = io.MultiWriter(out, &output)
	if err := cmd.Run(); err != nil {
		return &RunError{Cmd: name + " " + strings.Join(args, " "), Err: err, Output: output.String()}
	}
	return nil
}

// RunError is a command of a build that failed, with what it printed.
type RunError struct {
	Cmd, Output string
	Err         error
}

func (e *RunError) Error() string { return e.Cmd + ": " + e.Err.Error() }
func (e *RunError) Unwrap() error { return e.Err }

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
