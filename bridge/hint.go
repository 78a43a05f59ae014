package bridge

import (
	"errors"
	"fmt"
	"regexp"
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
func startHint(cause error, exit *ExitError, stderr string, fail failure, cfg config) string {
	switch {
	case errors.Is(cause, ErrInterpreterNotFound):
		return fmt.Sprintf("cannot run %q: run `%s` in your Go module to create .venv with the worker package, or set the pool's python (or PYVISOR_PYTHON) to a Python 3.10+ interpreter that has it", cfg.python, SetupCommand)
	case strings.Contains(stderr, "No module named pyvisor_worker"):
		return fmt.Sprintf("the interpreter %q does not have the worker package: run `%s` in your Go module (it creates .venv with the worker package of the pyvisor version you require; `... setup DIR` and PYVISOR_PYTHON=DIR/bin/python for another place)", cfg.python, SetupCommand)
	case exit != nil && exit.ExitCode == exitToolsImport:
		return loadHint(fail, cfg)
	case exit != nil && exit.ExitCode == exitUsage:
		return fmt.Sprintf("the worker rejected its command line: the Go module and the pyvisor-worker package are probably different versions; `go run github.com/pyvisor/pyvisor/cmd/pyvisor doctor` says which, and `%s` reinstalls the matching one", SetupCommand)
	case exit != nil && exit.ExitCode == exitVersion:
		return fmt.Sprintf("the worker package in %q was installed by another pyvisor version than this program's (a `go get -u` without a new setup?): run `%s` in your Go module to install this one's", cfg.python, SetupCommand)
	case exit != nil && exit.ExitCode == exitBind:
		return "the worker could not listen on its socket: check that the runtime directory ($TMPDIR) is writable and the path is short enough"
	case errors.Is(cause, ErrHandshakeTimeout):
		return fmt.Sprintf("the worker did not hand over within %v (the interpreter and the worker package; tools modules load after): an overloaded machine or a slow sitecustomize? Raise the pool's handshake_timeout, or look for what blocks in the stderr below", cfg.handshakeTimeout)
	case errors.Is(cause, ErrLoadTimeout):
		return fmt.Sprintf("the tools modules (%s) did not load within %v: raise the pool's load_timeout (PoolConfig.LoadTimeout) for a model that takes longer, or look for what blocks in the stderr below", strings.Join(cfg.tools, ", "), cfg.loadTimeout)
	case errors.Is(cause, ErrHandshake):
		return "something wrote to the worker's stdout before its handshake line (an interpreter wrapper script, sitecustomize or a shell profile?): pyvisor needs the worker's stdout to carry only the handshake; send other output to stderr"
	case errors.Is(cause, ErrExitedBeforeHandshake):
		return "the worker exited before it was ready: read its stderr below"
	}
	return ""
}

var missingRE = regexp.MustCompile(`^ModuleNotFoundError: No module named '([^']+)'`)

// loadHint says how to fix a tools module that would not load, by what it raised.
func loadHint(fail failure, cfg config) string {
	modules := strings.Join(cfg.tools, ", ")
	at := ""
	if fail.at != "" {
		at = " (" + fail.at + ")"
	}
	if m := missingRE.FindStringSubmatch(fail.exception); m != nil {
		missing := m[1]
		for _, t := range cfg.tools {
			if t == missing || strings.HasPrefix(t, missing+".") {
				return fmt.Sprintf("the tools module %q was not found by %s: check its name, and that its folder is the pool's dir (the config file's folder by default) or on the PYTHONPATH of the pool's env", t, cfg.python)
			}
		}
		return fmt.Sprintf("package %q, imported by %s%s, is not installed in %s: add it to the pool's requirements and run `%s -config FILE` (docs/environments.md), or `%s -r requirements.txt` for the default venv",
			strings.Split(missing, ".")[0], modules, at, cfg.python, SetupCommand, SetupCommand)
	}
	switch {
	case strings.HasPrefix(fail.exception, "SyntaxError") || strings.HasPrefix(fail.exception, "IndentationError") ||
		strings.HasPrefix(fail.exception, "TabError"):
		return fmt.Sprintf("%s has a syntax error%s: fix it; the traceback below shows the line", modules, at)
	case strings.Contains(fail.exception, "unsupported parameter annotation") || strings.Contains(fail.exception, "must be passable by keyword"):
		return fmt.Sprintf("a tool of %s has a parameter the schema cannot take%s: annotate it with a JSON type (int, float, str, bool, list, dict, a dataclass, TypedDict or pydantic model), an array type (np.ndarray), or leave it unannotated (docs/tools.md)", modules, at)
	case strings.HasPrefix(fail.exception, "ValueError: two tools are named"):
		return fmt.Sprintf("two tools of %s have one name: rename one with @tool(name=...)", modules)
	case fail.exception != "":
		return fmt.Sprintf("%s raised at import%s: %s; the traceback below ends in your code (a missing file or environment variable? The workers run in the pool's dir with the pool's env)", modules, at, fail.exception)
	}
	return fmt.Sprintf("a tools module (%s) could not be imported: check its name, that it imports cleanly with %s, and that its folder is the pool's dir (the config file's folder by default) or on the PYTHONPATH of the pool's env; the traceback is below", modules, cfg.python)
}
