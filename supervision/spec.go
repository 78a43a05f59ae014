package supervision

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Default restart intensity (Elixir's): 3 restarts within 5 seconds.
const (
	DefaultMaxRestarts = 3
	DefaultWithin      = 5 * time.Second
)

// Spec describes a supervisor: its strategy, restart intensity, optional
// backoff and its children in start order.
type Spec struct {
	Strategy Strategy
	// MaxRestarts restarts are allowed within Within; one more fails the
	// supervisor. A zero Within means the defaults (3 in 5 s); to forbid
	// restarts set MaxRestarts 0 and a non-zero Within.
	MaxRestarts int
	Within      time.Duration
	// Backoff, when set, delays each restart (the failed child stays
	// suspended, its mailbox kept, until then).
	Backoff  *Backoff
	Children []Child
}

// Child describes one child (Elixir's child spec).
type Child struct {
	// ID names the child within its supervisor; it is also its actor name.
	ID string
	// Producer makes the child's actor value, once per start and restart.
	Producer actor.Producer
	// Options are extra protoactor Props options (middleware, mailbox...).
	Options []actor.PropsOption
	// Restart is Permanent by default.
	Restart Restart
	// Shutdown is a 5 s graceful stop by default.
	Shutdown Shutdown
	// TrapExit says the child handles *ShutdownRequest itself and stops
	// itself when done (Erlang's trap_exit). Otherwise it stops right after
	// handling that message.
	TrapExit bool

	nested *nested
}

type nested struct {
	spec Spec
	opts []Option
}

// Nested returns a child that is itself a supervisor of spec: permanent, with
// Shutdown Infinity, trapping exits. Its events go to the same hook and it
// uses the same clock as its parent unless opts say otherwise. When it fails
// (intensity exceeded, start failed), its parent sees an abnormal exit.
func Nested(id string, spec Spec, opts ...Option) Child {
	return Child{ID: id, Restart: Permanent, Shutdown: Infinity(), TrapExit: true,
		nested: &nested{spec: spec, opts: opts}}
}

// IsSupervisor reports whether the child was made by Nested.
func (c Child) IsSupervisor() bool { return c.nested != nil }

func (s Spec) withDefaults() Spec {
	if s.Within == 0 {
		s.Within = DefaultWithin
		if s.MaxRestarts == 0 {
			s.MaxRestarts = DefaultMaxRestarts
		}
	}
	return s
}

// Validate reports the first problem of the spec, wrapping ErrInvalidSpec.
func (s Spec) Validate() error {
	switch {
	case s.Strategy < OneForOne || s.Strategy > RestForOne:
		return fmt.Errorf("%w: Strategy %d", ErrInvalidSpec, s.Strategy)
	case s.MaxRestarts < 0:
		return fmt.Errorf("%w: MaxRestarts %d < 0", ErrInvalidSpec, s.MaxRestarts)
	case s.Within < 0:
		return fmt.Errorf("%w: Within %v < 0", ErrInvalidSpec, s.Within)
	case s.Backoff != nil && s.Backoff.Base <= 0:
		return fmt.Errorf("%w: Backoff.Base must be > 0", ErrInvalidSpec)
	}
	seen := make(map[string]bool, len(s.Children))
	for i, c := range s.Children {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("children[%d]: %w", i, err)
		}
		if seen[c.ID] {
			return fmt.Errorf("%w: children[%d]: duplicate ID %q", ErrInvalidSpec, i, c.ID)
		}
		seen[c.ID] = true
	}
	return nil
}

// Validate reports the first problem of the child spec, wrapping ErrInvalidSpec.
func (c Child) Validate() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: ID is empty", ErrInvalidSpec)
	case c.Producer == nil && c.nested == nil:
		return fmt.Errorf("%w: child %q: Producer is nil", ErrInvalidSpec, c.ID)
	case c.Restart < Permanent || c.Restart > Temporary:
		return fmt.Errorf("%w: child %q: Restart %d", ErrInvalidSpec, c.ID, c.Restart)
	case c.Shutdown.kind == shutdownTimeout && c.Shutdown.timeout <= 0:
		return fmt.Errorf("%w: child %q: Shutdown timeout must be > 0", ErrInvalidSpec, c.ID)
	case c.nested != nil:
		if err := c.nested.spec.Validate(); err != nil {
			return fmt.Errorf("child %q: %w", c.ID, err)
		}
	}
	return nil
}
