package supervision

import (
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
)

// Panic is the failure reason a supervised child reports to protoactor: the
// value it panicked with and the stack where it did.
type Panic struct {
	Value any
	Stack Stack
}

func (p *Panic) Error() string { return fmt.Sprintf("panic: %v", p.Value) }

// Unwrap returns the panic value when it is an error.
func (p *Panic) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// EscalationError is how a supervisor fails: a nested supervisor panics with
// it (its parent sees an abnormal exit), a top-level one ends with it
// (Handle.Err). Err wraps ErrIntensityExceeded or ErrStartFailed.
type EscalationError struct {
	Supervisor *actor.PID
	Err        error
}

// Error names the supervisor by its path under the actor system's root, never by its
// address: the text reaches users.
func (e *EscalationError) Error() string {
	name := strings.TrimPrefix(e.Supervisor.GetId(), "guardian/")
	if name == "" {
		name = "?"
	}
	return fmt.Sprintf("supervisor %s failed: %v", name, e.Err)
}

func (e *EscalationError) Unwrap() error { return e.Err }

// unwrapPanic splits a protoactor failure reason into value and stack.
func unwrapPanic(reason any) (any, Stack) {
	if p, ok := reason.(*Panic); ok {
		return p.Value, p.Stack
	}
	return reason, nil
}

// reasonError turns a panic value into an error, keeping errors as they are.
func reasonError(v any) error {
	if err, ok := v.(error); ok {
		return err
	}
	return fmt.Errorf("%v", v)
}
