package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/bridge"
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
// problem: the interpreter, the worker package and its version, the tools modules (of
// -tools, or of every pool in -config, with each pool's dir and env), the runtime dir.
func doctor(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := flags("doctor", errOut)
	py := fs.String("python", "", "the worker interpreter (default: $PYVISOR_PYTHON, else the nearest .venv, else python3)")
	toolsFlag := fs.String("tools", "", "comma-separated tools modules to import")
	configFile := fs.String("config", "", "a pyvisor YAML or JSON config: check every pool's tools, with its dir and env")
	runtimeDir := fs.String("runtime-dir", os.TempDir(), "where workers' socket directories go (bridge.WithRuntimeDir)")
	if fs.Parse(args) != nil {
		return errUsage // the flag package has said why
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(errOut, "usage: pyvisor doctor [-python P] [-tools M,...] [-config FILE] [-runtime-dir DIR]")
		return errUsage
	}
	var pools []pyvisor.PoolConfig
	if *configFile != "" {
		cfg, err := pyvisor.LoadConfig(*configFile)
		if err != nil {
			return err
		}
		pools = cfg.Pools
		if *py == "" {
			*py = cfg.Python
		}
	}
	if *toolsFlag != "" {
		pools = append(pools, pyvisor.PoolConfig{Name: "-tools", Tools: strings.Split(*toolsFlag, ",")})
	}
	if *py == "" {
		*py = bridge.Interpreter()
	}

	checks := []check{interpreterCheck(ctx, *py)}
	if checks[0].ok {
		checks = append(checks, packageCheck(ctx, *py))
		if checks[1].ok {
			for _, p := range pools {
				for _, m := range p.Tools {
					checks = append(checks, importCheck(ctx, *py, p, strings.TrimSpace(m)))
				}
			}
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
		fmt.Fprintf(out, "%s %s: %s\n", mark, c.what, c.detail)
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
	got, err := workerVersion(ctx, py)
	if err != nil {
		c.detail = "not installed in " + py
		c.fix = "run `" + setupCmd + "` in your Go module (it creates .venv with pyvisor-worker " + want + "), or `... setup DIR` and set PYVISOR_PYTHON=DIR/bin/python"
		return c
	}
	stamp := sourceDigest(ctx, py)
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

// sourceDigest is the digest setup stamped into py's worker package ("" for none).
func sourceDigest(ctx context.Context, py string) string {
	b, err := exec.CommandContext(ctx, py, "-c", "from pyvisor_worker import source; print(source.digest())").Output()
	if err != nil {
		return "" // a package from before the stamp
	}
	return strings.TrimSpace(string(b))
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

func importCheck(ctx context.Context, py string, p pyvisor.PoolConfig, module string) check {
	c := check{what: fmt.Sprintf("tools module %s (pool %s)", module, p.Name)}
	env, err := p.SlotEnv(0)
	if err != nil {
		c.detail, c.fix = err.Error(), "fix the pool's slots.env (docs/gpus.md)"
		return c
	}
	cmd := exec.CommandContext(ctx, py, "-c", "import importlib, sys; importlib.import_module(sys.argv[1])", module)
	cmd.Env = bridge.WorkerEnv(env) // what the first worker gets, nothing more
	cmd.Dir = p.Dir
	b, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		c.detail = "does not import: " + lines[len(lines)-1]
		c.fix = "check its name; put its directory on the pool's PYTHONPATH (env: {PYTHONPATH: DIR}) or set the pool's dir; install its packages with `" + setupCmd + " -r requirements.txt`"
		return c
	}
	c.ok, c.detail = true, "imports"
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
