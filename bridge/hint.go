package bridge

import (
	"errors"
	"fmt"
	"strings"
)

// Exit codes of `python -m pyvisor_worker` that say why it would not start.
const (
	exitUsage       = 2
	exitToolsImport = 3
	exitBind        = 4
	exitVersion     = 5
)

// SetupCommand is the command that installs the worker package into .venv: run in a Go
// module that requires pyvisor, it is the pyvisor command of that very version, whose
// embedded worker package is the one this runtime speaks.
const SetupCommand = "go run github.com/pyvisor/pyvisor/cmd/pyvisor setup"

// startHint says how to fix the common causes of a worker that will not start.
func startHint(cause error, exit *ExitError, stderr string, cfg config) string {
	switch {
	case errors.Is(cause, ErrInterpreterNotFound):
		return fmt.Sprintf("cannot run %q: run `%s` in your Go module to create .venv with the worker package, or set PYVISOR_PYTHON (or bridge.WithPython) to a Python 3.10+ interpreter that has it", cfg.python, SetupCommand)
	case strings.Contains(stderr, "No module named pyvisor_worker"):
		return fmt.Sprintf("the interpreter %q does not have the worker package: run `%s` in your Go module (it creates .venv with the worker package of the pyvisor version you require; `... setup DIR` and PYVISOR_PYTHON=DIR/bin/python for another place)", cfg.python, SetupCommand)
	case exit != nil && exit.ExitCode == exitToolsImport:
		return fmt.Sprintf("a tools module (%s) could not be imported: check its name, that it imports cleanly with %s, and that its directory is the workers' (PoolConfig.Dir, or the config file's folder) or on PYTHONPATH (PoolConfig.Env; bridge.WithDir, WithEnv); the traceback is below", strings.Join(cfg.tools, ", "), cfg.python)
	case exit != nil && exit.ExitCode == exitUsage:
		return fmt.Sprintf("the worker rejected its command line: the Go module and the pyvisor-worker package are probably different versions; `go run github.com/pyvisor/pyvisor/cmd/pyvisor doctor` says which, and `%s` reinstalls the matching one", SetupCommand)
	case exit != nil && exit.ExitCode == exitVersion:
		return fmt.Sprintf("the worker package in %q was installed by another pyvisor version than this program's (a `go get -u` without a new setup?): run `%s` in your Go module to install this one's", cfg.python, SetupCommand)
	case exit != nil && exit.ExitCode == exitBind:
		return "the worker could not listen on its socket: check that the runtime directory (WithRuntimeDir, default $TMPDIR) is writable and the path is short enough"
	case errors.Is(cause, ErrHandshakeTimeout):
		return fmt.Sprintf("the worker did not hand over within %v (the interpreter and the worker package; tools modules load after): an overloaded machine or a slow sitecustomize? Raise the handshake timeout, or look for what blocks in the stderr below", cfg.handshakeTimeout)
	case errors.Is(cause, ErrLoadTimeout):
		return fmt.Sprintf("the tools modules (%s) did not load within %v: raise PoolConfig.LoadTimeout (bridge.WithLoadTimeout) for a model that takes longer, or look for what blocks in the stderr below", strings.Join(cfg.tools, ", "), cfg.loadTimeout)
	case errors.Is(cause, ErrHandshake):
		return "something wrote to the worker's stdout before its handshake line (an interpreter wrapper script, sitecustomize or a shell profile?): pyvisor needs the worker's stdout to carry only the handshake; send other output to stderr"
	case errors.Is(cause, ErrExitedBeforeHandshake):
		return "the worker exited before it was ready: read its stderr below"
	}
	return ""
}
