package supervision

import (
	"fmt"
	"time"
)

// Shutdown says how a child is stopped (Elixir's :shutdown). The zero value is
// a graceful stop with a 5 s timeout, Elixir's default for workers.
type Shutdown struct {
	kind    shutdownKind
	timeout time.Duration
}

type shutdownKind int

const (
	shutdownDefault shutdownKind = iota
	shutdownBrutal
	shutdownTimeout
	shutdownInfinity
)

// DefaultShutdownTimeout is the timeout of the zero Shutdown.
const DefaultShutdownTimeout = 5 * time.Second

// BrutalKill stops the child at once: it gets *actor.Stopping, queued
// messages are dropped.
func BrutalKill() Shutdown { return Shutdown{kind: shutdownBrutal} }

// Timeout sends the child a *ShutdownRequest message and kills it if it has not
// stopped d later.
func Timeout(d time.Duration) Shutdown { return Shutdown{kind: shutdownTimeout, timeout: d} }

// Infinity sends the child a *ShutdownRequest message and waits for it to stop,
// however long it takes (Elixir's default for supervisors).
func Infinity() Shutdown { return Shutdown{kind: shutdownInfinity} }

// Brutal reports whether the child is killed without a graceful phase.
func (s Shutdown) Brutal() bool { return s.kind == shutdownBrutal }

// Deadline returns how long a graceful stop may take; ok is false for
// BrutalKill and Infinity.
func (s Shutdown) Deadline() (d time.Duration, ok bool) {
	switch s.kind {
	case shutdownDefault:
		return DefaultShutdownTimeout, true
	case shutdownTimeout:
		return s.timeout, true
	}
	return 0, false
}

func (s Shutdown) String() string {
	switch s.kind {
	case shutdownBrutal:
		return "brutal_kill"
	case shutdownInfinity:
		return "infinity"
	}
	d, _ := s.Deadline()
	return fmt.Sprint(d)
}

// ShutdownRequest is the message a child receives when its supervisor stops it
// gracefully. It is queued after the messages already in the mailbox.
type ShutdownRequest struct {
	// Reason says why: "shutdown" for an ordered stop, or the error that made
	// the supervisor stop its children.
	Reason error
}
