package supervision

// Option configures a supervisor.
type Option func(*config)

type config struct {
	clock Clock
	hook  func(Event)
	name  string
	// ackParent: a nested supervisor tells its parent it has started once
	// all its children have.
	ackParent bool
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.clock == nil {
		c.clock = RealClock{}
	}
	return c
}

// WithClock sets the clock (default RealClock{}).
func WithClock(c Clock) Option { return func(cfg *config) { cfg.clock = c } }

// WithEventHook sets the function that receives every Event. It runs on the
// supervisor's goroutine, in decision order, and must not block. Nested
// supervisors inherit it, so it may run on several goroutines at once.
func WithEventHook(h func(Event)) Option { return func(cfg *config) { cfg.hook = h } }

// WithName sets the actor name of a top-level supervisor (Start); by default
// protoactor generates one.
func WithName(name string) Option { return func(cfg *config) { cfg.name = name } }
