package actors

import "github.com/pyvisor/pyvisor/bridge"

// workerSlot is the slot a worker serves: its id, its index and the environment made
// for it (PoolSpec.SlotEnv), the same for each of its processes.
type workerSlot struct {
	id    string
	index int
	env   map[string]string
}

// options give a process of the slot its environment, on top of the pool's.
func (s workerSlot) options() []bridge.Option {
	opts := make([]bridge.Option, 0, len(s.env))
	for k, v := range s.env {
		opts = append(opts, bridge.WithEnv(k, v))
	}
	return opts
}
