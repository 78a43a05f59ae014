package bridge

import (
	"errors"
	"fmt"
	"github.com/pyvisor/pyvisor/internal/lifecycle"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Match them with errors.Is; the errors returned carry more context.
var (
	// ErrUnknownTool: the worker has no tool of that name.
	ErrUnknownTool = errors.New("unknown tool")
	// ErrInvalidArgument: the arguments do not match the tool's parameters.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnknownSession: no session of that id is open in the worker.
	ErrUnknownSession = errors.New("unknown session")
	// ErrWrongCallKind: a streaming tool called with Execute, or a plain one with ExecuteStream.
	ErrWrongCallKind = errors.New("wrong call kind for tool")
	// ErrMessageTooLarge: a request or result exceeded the maximum message size.
	ErrMessageTooLarge = errors.New("message too large")
	// ErrUnauthenticated: the worker refused the call's token (TCP transport).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable: the worker could not be reached, though its process is alive.
	ErrUnavailable = errors.New("worker unavailable")
	// ErrWorkerCrashed: the worker process exited without being asked to stop.
	ErrWorkerCrashed = errors.New("worker crashed")
	// ErrStopped: the worker was stopped; no more calls are taken. It is the one
	// ErrStopped of the whole module (pyvisor.ErrStopped, actors and supervision too).
	ErrStopped = lifecycle.ErrStopped
	// ErrHandshakeTimeout: the worker did not print its handshake line in time.
	ErrHandshakeTimeout = errors.New("handshake timeout")
	// ErrHandshake: the worker's first stdout line is not a handshake pyvisor understands.
	ErrHandshake = errors.New("bad handshake")
	// ErrInterpreterNotFound: the Python interpreter could not be executed.
	ErrInterpreterNotFound = errors.New("python interpreter not found")
	// ErrExitedBeforeHandshake: the worker process exited before its handshake.
	ErrExitedBeforeHandshake = errors.New("worker exited before handshake")
	// ErrExitedWhileLoading: the worker process exited while it loaded its tools
	// modules (an import that failed: the traceback is in StartError.Stderr).
	ErrExitedWhileLoading = errors.New("worker exited while loading its tools")
	// ErrLoadTimeout: the tools modules did not load within the load timeout.
	ErrLoadTimeout = errors.New("tools did not load in time")
)

// ToolError is an exception raised by a Python tool. The worker keeps serving.
type ToolError struct {
	Tool          string
	Type          string // the exception's class, e.g. "ValueError"
	Message       string
	Traceback     string // Python's formatted traceback
	CorrelationID string
}

func (e *ToolError) Error() string {
	return fmt.Sprintf("tool %q raised %s: %s", e.Tool, e.Type, e.Message)
}

// ExitError reports a worker process that exited without being asked to. It matches
// ErrWorkerCrashed.
type ExitError struct {
	PID      int
	ExitCode int            // -1 when killed by a signal
	Signal   syscall.Signal // 0 unless killed by a signal
	Stderr   string         // the last lines the process wrote on stderr
	// Cause is why the host killed it (Process.KillFor), nil when it died on its own.
	Cause error
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("worker crashed: python process %d %s", e.PID, describeExit(e.ExitCode, e.Signal))
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the Cause the host killed the process for, if any.
func (e *ExitError) Unwrap() error { return e.Cause }

// Is makes errors.Is(err, ErrWorkerCrashed) true.
func (e *ExitError) Is(target error) bool { return target == ErrWorkerCrashed }

func describeExit(code int, sig syscall.Signal) string {
	if sig != 0 {
		return "killed by signal " + sig.String()
	}
	return fmt.Sprintf("exited with status %d", code)
}

// StartError reports a worker that did not start, with what is needed to fix it.
type StartError struct {
	WorkerID string
	Python   string
	Err      error  // a sentinel such as ErrHandshakeTimeout, possibly wrapped
	Exit     string // how the process ended, when it did
	Stderr   string // the last lines the process wrote on stderr
	Hint     string // how to fix the common causes
	// ExitCode is the worker's exit status when it exited on its own (0 otherwise):
	// 2 usage, 3 a tools module would not import, 4 bind, 5 another version's package.
	ExitCode int
}

// Deterministic says whether starting again would fail the same way: the interpreter
// cannot be run or lacks the worker package, a tools module does not import (a wrong
// name, a syntax error, a missing package, a tool the schema cannot take), or the
// worker package is another pyvisor's; or the tools took longer to load than the load
// timeout allows, which the next try would too, after as long again. A pool still starting
// fails at once on one, rather than trying again.
func (e *StartError) Deterministic() bool {
	switch {
	case errors.Is(e.Err, ErrInterpreterNotFound), errors.Is(e.Err, ErrLoadTimeout):
		return true
	case e.ExitCode == exitToolsImport, e.ExitCode == exitUsage, e.ExitCode == exitVersion:
		return true
	}
	return strings.Contains(e.Stderr, "No module named pyvisor_worker")
}

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "start python worker %q (%s): %v", e.WorkerID, e.Python, e.Err)
	if e.Exit != "" {
		fmt.Fprintf(&b, " (%s)", e.Exit)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, "\n  hint: %s", e.Hint)
	}
	if e.Stderr != "" {
		b.WriteString("\n  stderr (last lines):\n")
		for _, line := range strings.Split(strings.TrimRight(e.Stderr, "\n"), "\n") {
			b.WriteString("    ")
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func (e *StartError) Unwrap() error { return e.Err }

// CallError is a contract or transport error of one call: its sentinel (Reason, what
// errors.Is matches), the worker's own words (Detail, what Error prints when present) and
// the gRPC code.
type CallError struct {
	Op     string // "execute", "stream", "heartbeat", ...
	Tool   string // empty for calls that name no tool
	Reason error
	Detail string
	Code   codes.Code
}

func (e *CallError) Error() string {
	op := e.Op
	if e.Tool != "" {
		op += " " + e.Tool
	}
	if e.Detail == "" {
		return op + ": " + e.Reason.Error()
	}
	return op + ": " + e.Detail
}

func (e *CallError) Unwrap() error { return e.Reason }

// GRPCStatus lets status.FromError see the original code.
func (e *CallError) GRPCStatus() *status.Status { return status.New(e.Code, e.Detail) }
