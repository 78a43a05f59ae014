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
)

// startHint says how to fix the common causes of a worker that will not start.
func startHint(cause error, exit *ExitError, stderr string, cfg config) string {
	switch {
	case errors.Is(cause, ErrInterpreterNotFound):
		return fmt.Sprintf("cannot run %q: set PYVISOR_PYTHON (or bridge.WithPython) to a Python 3.10+ interpreter with pyvisor-worker installed, or run `go tool task setup` to create the project's .venv", cfg.python)
	case strings.Contains(stderr, "No module named pyvisor_worker"):
		return fmt.Sprintf("the interpreter %q does not have the worker package: install it with `%s -m pip install -e python` from the pyvisor checkout (or `pip install pyvisor-worker`)", cfg.python, cfg.python)
	case exit != nil && exit.ExitCode == exitToolsImport:
		return fmt.Sprintf("a tools module (%s) could not be imported: check its name, that it imports cleanly with %s, and that its directory is on PYTHONPATH (bridge.WithEnv(\"PYTHONPATH\", dir) or WithDir); the traceback is below", strings.Join(cfg.tools, ", "), cfg.python)
	case exit != nil && exit.ExitCode == exitUsage:
		return "the worker rejected its command line: the Go module and the pyvisor-worker package are probably different versions; reinstall the package from the same checkout"
	case exit != nil && exit.ExitCode == exitBind:
		return "the worker could not listen on its socket: check that the runtime directory (WithRuntimeDir, default $TMPDIR) is writable and the path is short enough"
	case errors.Is(cause, ErrHandshakeTimeout):
		return fmt.Sprintf("the worker did not report ready within %v: a slow import in a tools module? Raise the handshake timeout, or look for what blocks in the stderr below", cfg.handshakeTimeout)
	case errors.Is(cause, ErrHandshake):
		return "something wrote to the worker's stdout before its handshake line (an interpreter wrapper script, sitecustomize or a shell profile?): pyvisor needs the worker's stdout to carry only the handshake; send other output to stderr"
	case errors.Is(cause, ErrExitedBeforeHandshake):
		return "the worker exited before it was ready: read its stderr below"
	}
	return ""
}
