package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/envs"
	"github.com/pyvisor/pyvisor/python"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// setup creates a venv in DIR (default .venv), or reuses the one there, and installs the
// embedded worker package into it (and the user's requirements with -r). With -config, it
// makes what every pool of the configuration runs: each pool's own environment
// (requirements) in the cache, and the default venv for pools without one.
func setup(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := flags("setup", errOut)
	base := fs.String("python", "python3", "the Python 3.10+ interpreter that creates the venv")
	configFile := fs.String("config", "", "a pyvisor YAML or JSON config: build every pool's environment")
	var reqs stringList
	fs.Var(&reqs, "r", "a requirements file of your own tools' packages to install too (repeatable)")
	if fs.Parse(args) != nil {
		return errUsage // the flag package has said why
	}
	if fs.NArg() > 1 || (*configFile != "" && (fs.NArg() > 0 || len(reqs) > 0)) {
		fmt.Fprintln(errOut, "usage: pyvisor setup [-python python3] [-r requirements.txt] [DIR]\n       pyvisor setup -config FILE")
		return errUsage
	}
	if *configFile != "" {
		return setupConfig(ctx, *configFile, out)
	}
	dir := ".venv"
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	return setupVenv(ctx, *base, dir, reqs, out)
}

// setupConfig builds or reuses the environment of every pool of the configuration in
// file; a pool without requirements that runs the default venv gets it made.
func setupConfig(ctx context.Context, file string, out io.Writer) error {
	cfg, err := pyvisor.LoadConfig(file)
	if err == nil {
		cfg, err = cfg.WithEnv(os.LookupEnv)
	}
	if err != nil {
		return err
	}
	cfg = cfg.WithDefaults()
	defaultVenv := false
	for _, p := range cfg.Pools {
		cache, spec, ok := cfg.Environment(p)
		if !ok {
			py, _ := cfg.Interpreter(ctx, p)
			switch {
			case p.Python == "" && cfg.Python == "":
				defaultVenv = true
			case !installed(ctx, py):
				return fmt.Errorf("pool %s runs %s, which lacks pyvisor-worker %s: run `%s %s`, or give the pool requirements", p.Name, py, python.Version(), setupCmd, venvOf(py))
			default:
				fmt.Fprintf(out, "ok: pool %s runs %s\n", p.Name, py)
			}
			continue
		}
		start := time.Now()
		e, reused, err := cache.Build(ctx, spec, out)
		if err != nil {
			return fmt.Errorf("pool %s: %w", p.Name, err)
		}
		how := fmt.Sprintf("built in %.1f s", time.Since(start).Seconds())
		if reused {
			how = "already built"
		}
		fmt.Fprintf(out, "ok: pool %s runs environment %s (%s, Python %s): %s\n", p.Name, e.Key, how, e.Python.Version, e.Interpreter())
	}
	if defaultVenv {
		dir := filepath.Join(cfg.Dir, ".venv")
		if py := bridge.InterpreterFrom(cfg.Dir); py != "python3" && installed(ctx, py) {
			fmt.Fprintf(out, "ok: pools without requirements run %s\n", py)
			return nil
		}
		return setupVenv(ctx, "python3", dir, nil, out)
	}
	return nil
}

// setupVenv creates a venv in dir with base, or reuses the one there, and installs the
// embedded worker package and reqs into it.
func setupVenv(ctx context.Context, base, dir string, reqs []string, out io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	py := filepath.Join(dir, "bin", "python")
	created := false
	if _, err := os.Stat(py); err != nil {
		if c := interpreterCheck(ctx, base); !c.ok { // before anything is made
			return fmt.Errorf("%s: %s; %s", c.what, c.detail, c.fix)
		}
		fmt.Fprintf(out, "creating a venv in %s with %s\n", dir, base)
		if err := envs.Run(ctx, out, "", nil, base, "-m", "venv", dir); err != nil {
			return fmt.Errorf("create the venv: %w (is %s a Python 3.10+ with the venv module? On Debian: apt install python3-venv)", err, base)
		}
		created = true
	} else {
		if c := interpreterCheck(ctx, py); !c.ok {
			return fmt.Errorf("the venv in %s: %s; remove it and run setup with a newer -python", dir, c.detail)
		}
		if len(reqs) == 0 && installed(ctx, py) {
			fmt.Fprintf(out, "ok: pyvisor-worker %s (source %s) is already in %s\n", python.Version(), python.Digest(), dir)
			return nil
		}
		fmt.Fprintf(out, "reusing the venv in %s\n", dir)
	}
	// A venv this run created and could not finish is removed: none is left half-made.
	done := false
	defer func() {
		if created && !done {
			os.RemoveAll(dir)
		}
	}()
	src, err := os.MkdirTemp("", "pyvisor-worker-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := python.Unpack(src); err != nil {
		return err
	}
	fmt.Fprintf(out, "installing pyvisor-worker %s (the Go module's own) and its packages: pip's progress follows\n", python.Version())
	install := []string{"-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check", src}
	for _, r := range reqs {
		install = append(install, "-r", r)
	}
	if err := envs.Run(ctx, out, "", nil, py, install...); err != nil {
		return fmt.Errorf("pip install failed (its output is above)%s", pipHint(err))
	}
	got, stamp, err := envs.Worker(ctx, py)
	if err != nil {
		return err
	}
	if got != python.Version() || stamp != python.Digest() {
		return fmt.Errorf("the venv reports pyvisor-worker %s (source %q) after installing %s (source %s)", got, stamp, python.Version(), python.Digest())
	}
	done = true
	fmt.Fprintf(out, "ok: pyvisor-worker %s (source %s) in %s\n", got, python.Digest(), dir)
	fmt.Fprintf(out, "the runtime finds it as the nearest .venv above its working directory, or set PYVISOR_PYTHON=%s\n", py)
	return nil
}

// pipHint says what a failed pip install most likely needs, from what pip printed.
func pipHint(err error) string {
	var r *envs.RunError
	if !errors.As(err, &r) {
		return ": " + err.Error()
	}
	switch out := r.Output; {
	case strings.Contains(out, "Requires-Python") || strings.Contains(out, "requires a different Python"):
		return ": a package needs a newer Python than the venv's; run setup with a newer -python"
	case strings.Contains(out, "Failed to establish a new connection") || strings.Contains(out, "Temporary failure in name resolution") ||
		strings.Contains(out, "Could not fetch URL") || strings.Contains(out, "ConnectionError"):
		return ": pip could not reach the package index (PyPI, or the mirror set with PIP_INDEX_URL)"
	case strings.Contains(out, "No matching distribution") || strings.Contains(out, "ResolutionImpossible"):
		return ": pip found no version that fits (see the resolver's message above)"
	}
	return ""
}

// installed says whether py already has this Go module's own worker package.
func installed(ctx context.Context, py string) bool {
	got, stamp, err := envs.Worker(ctx, py)
	return err == nil && got == python.Version() && stamp == python.Digest()
}
