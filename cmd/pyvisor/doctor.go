package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/envs"
	"github.com/pyvisor/pyvisor/python"
)

// maxSocketPath is the longest Unix socket path the worker can bind (sun_path, less the
// worker's own socket file name).
const maxSocketPath = 100

// check is one finding of doctor: ok, or what is wrong and how to fix it; a warning is
// ok but says what doctor could not tell.
type check struct {
	what, detail, fix string
	ok, warn          bool
}

// doctor checks what a runtime needs of the Python side and says how to fix each
// problem: for every pool (of -config, and one of -tools), its interpreter or built
// environment, the worker package there, and a real worker started with the pool's
// settings: its tools loaded, how long that took against the pool's load_timeout. Then
// the runtime dir.
func doctor(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := flags("doctor", errOut)
	py := fs.String("python", "", "the worker interpreter (default: $PYVISOR_PYTHON, else the nearest .venv, else python3)")
	toolsFlag := fs.String("tools", "", "comma-separated tools modules to load in a worker")
	configFile := fs.String("config", "", "a pyvisor YAML or JSON config: start a worker of every pool, with its settings")
	runtimeDir := fs.String("runtime-dir", os.TempDir(), "where workers' socket directories go (bridge.WithRuntimeDir)")
	if fs.Parse(args) != nil {
		return errUsage // the flag package has said why
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(errOut, "usage: pyvisor doctor [-python P] [-tools M,...] [-config FILE] [-runtime-dir DIR]")
		return errUsage
	}
	var cfg pyvisor.Config
	if *configFile != "" {
		var err error
		if cfg, err = pyvisor.LoadConfig(*configFile); err == nil {
			cfg, err = cfg.WithEnv(os.LookupEnv)
		}
		if err != nil {
			return err
		}
	}
	if *py != "" {
		cfg.Python = *py
	}
	if *toolsFlag != "" {
		cfg.Pools = append(cfg.Pools, pyvisor.PoolConfig{Name: "-tools", Tools: strings.Split(*toolsFlag, ",")})
	}
	cfg = cfg.WithDefaults()

	var checks []check
	usable := map[string]bool{} // interpreter: it runs and has the worker package
	interpreter := func(py string) bool {
		if ok, seen := usable[py]; seen {
			return ok
		}
		c := interpreterCheck(ctx, py)
		checks = append(checks, c)
		if c.ok {
			c = packageCheck(ctx, py)
			checks = append(checks, c)
		}
		usable[py] = c.ok
		return c.ok
	}
	if len(cfg.Pools) == 0 {
		py, _ := cfg.Interpreter(ctx, pyvisor.PoolConfig{})
		interpreter(py)
	}
	for _, p := range cfg.Pools {
		py, err := cfg.Interpreter(ctx, p)
		if err != nil {
			checks = append(checks, check{what: "environment of pool " + p.Name, detail: err.Error(),
				fix: "`" + setupCmd + " -config " + orDefault(*configFile, "FILE") + "` builds it"})
			continue
		}
		if interpreter(py) {
			checks = append(checks, workerCheck(ctx, py, p, *runtimeDir))
		}
	}
	checks = append(checks, runtimeDirCheck(*runtimeDir))
	failed := 0
	for _, c := range checks {
		mark := "ok  "
		switch {
		case !c.ok:
			mark, failed = "FAIL", failed+1
		case c.warn:
			mark = "warn"
		}
		fmt.Fprintf(out, "%s %s: %s\n", mark, c.what, strings.ReplaceAll(c.detail, "\n", "\n     "))
		if (!c.ok || c.warn) && c.fix != "" {
			fmt.Fprintf(out, "     fix: %s\n", c.fix)
		}
	}
	if failed > 0 {
		fmt.Fprintf(out, "%d of %d checks failed\n", failed, len(checks))
		return errFailed
	}
	fmt.Fprintf(out, "all %d checks passed\n", len(checks))
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func interpreterCheck(ctx context.Context, py string) check {
	c := check{what: "interpreter " + py}
	b, err := exec.CommandContext(ctx, py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3]); raise SystemExit(sys.version_info < (3, 10))").CombinedOutput()
	switch {
	case err != nil && len(b) == 0:
		c.detail = err.Error()
		c.fix = "install Python 3.10+ and run `" + setupCmd + "` in your Go module, or point PYVISOR_PYTHON (or -python) at a Python 3.10+ interpreter"
	case err != nil:
		c.detail = "Python " + strings.TrimSpace(string(b)) + " is older than 3.10"
		c.fix = "create the venv with a newer Python: `" + setupCmd + " -python python3.12`"
	default:
		c.ok, c.detail = true, "Python "+strings.TrimSpace(string(b))
	}
	return c
}

// setupCmd is how the fixes name the setup command: run in the user's module, it is the
// pyvisor version that module requires.
const setupCmd = bridge.SetupCommand

func packageCheck(ctx context.Context, py string) check {
	want, digest := python.Version(), python.Digest()
	c := check{what: "worker package pyvisor-worker"}
	got, stamp, err := envs.Worker(ctx, py)
	if err != nil {
		c.detail = "not installed in " + py
		c.fix = "run `" + setupCmd + "` in your Go module (it creates .venv with pyvisor-worker " + want + "), or `... setup DIR` and set PYVISOR_PYTHON=DIR/bin/python"
		return c
	}
	switch {
	case got != want || (stamp != "" && stamp != digest):
		c.detail = fmt.Sprintf("%s (source %s) installed, but this Go module embeds %s (source %s)", got, orNone(stamp), want, digest)
		c.fix = "install the matching one: `" + setupCmd + " " + venvOf(py) + "`"
	case stamp == "":
		c.ok, c.warn = true, true
		c.detail = got + ", not installed by setup (an editable or hand-made install): its source cannot be compared with the Go module's"
		c.fix = "`" + setupCmd + " " + venvOf(py) + "` installs the Go module's own, which workers check at start"
	default:
		c.ok, c.detail = true, fmt.Sprintf("%s (source %s), the Go module's own", got, stamp)
	}
	return c
}

func orNone(s string) string {
	if s == "" {
		return "unstamped"
	}
	return s
}

// venvOf is the venv directory of a venv's interpreter (.venv when py is not in one).
func venvOf(py string) string {
	if filepath.Base(filepath.Dir(py)) == "bin" {
		return filepath.Dir(filepath.Dir(py))
	}
	return ".venv"
}

// workerCheck starts one worker of pool p as the runtime would (its interpreter py, tools,
// dir, env and timeouts), times its load against the pool's load_timeout, and stops it.
func workerCheck(ctx context.Context, py string, p pyvisor.PoolConfig, runtimeDir string) check {
	c := check{what: fmt.Sprintf("pool %s: a worker of %s", p.Name, strings.Join(p.Tools, ", "))}
	env, err := p.SlotEnv(0) // what the first worker gets
	if err != nil {
		c.detail, c.fix = err.Error(), "fix the pool's slots.env (docs/gpus.md)"
		return c
	}
	opts := []bridge.Option{
		bridge.WithPython(py),
		bridge.WithTools(p.Tools...),
		bridge.WithDir(p.Dir),
		bridge.WithRuntimeDir(runtimeDir),
		bridge.WithHandshakeTimeout(p.HandshakeTimeout),
		bridge.WithLoadTimeout(p.LoadTimeout),
		bridge.WithStopTimeout(p.StopTimeout),
	}
	for k, v := range env {
		opts = append(opts, bridge.WithEnv(k, v))
	}
	began := time.Now()
	proc, err := bridge.Start(ctx, opts...)
	took := time.Since(began)
	if err != nil {
		c.detail = fmt.Sprintf("did not start in %.1f s: %v", took.Seconds(), err)
		c.fix = "the hint above says what to change: the pool's tools, dir, env or python, or `" + setupCmd + "`"
		var se *bridge.StartError
		if errors.As(err, &se) && errors.Is(se, bridge.ErrLoadTimeout) {
			c.fix = "raise the pool's load_timeout (now " + p.LoadTimeout.String() + ") above the import's time"
		}
		return c
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), p.StopTimeout+5*time.Second)
		defer cancel()
		_ = proc.Stop(stopCtx)
	}()
	info, err := proc.Client().Describe(ctx)
	if err != nil {
		c.detail = "started, but Describe failed: " + err.Error()
		return c
	}
	c.ok = true
	c.detail = fmt.Sprintf("started and loaded %d tools in %.1f s (load_timeout %s), Python %s", len(info.Tools), took.Seconds(), p.LoadTimeout, info.PythonVersion)
	if p.MemoryLimit > 0 {
		c.detail += fmt.Sprintf("; memory_limit %d MiB enforced by a sampler every 50 ms (docs/limits.md)", p.MemoryLimit>>20)
	}
	if took > p.LoadTimeout/2 {
		c.warn = true
		c.fix = "the load takes over half the pool's load_timeout: raise it, or a slower machine will fail to start"
	}
	return c
}

func runtimeDirCheck(dir string) check {
	c := check{what: "runtime dir " + dir}
	probe, err := os.MkdirTemp(dir, "pyvisor-")
	if err != nil {
		c.detail = "cannot create a socket directory: " + err.Error()
		c.fix = "set TMPDIR (or bridge.WithRuntimeDir) to a writable directory"
		return c
	}
	defer os.Remove(probe)
	if n := len(filepath.Join(probe, "worker.sock")); n > maxSocketPath {
		c.detail = fmt.Sprintf("socket paths would be %d bytes, over the %d Unix sockets allow", n, maxSocketPath)
		c.fix = "use a shorter runtime dir, for example TMPDIR=/tmp"
		return c
	}
	c.ok, c.detail = true, "writable, socket paths short enough"
	return c
}
