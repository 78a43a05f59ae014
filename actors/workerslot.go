package actors

import (
	"strconv"

	"github.com/pyvisor/pyvisor/bridge"
)

// workerSlot is the slot a worker serves: its id, its index and the environment made
// for it (PoolSpec.SlotEnv), the same for each of its processes.
type workerSlot struct {
	id    string
	index int
	env   map[string]string
}

// Environment variables that tell a worker process where it serves.
const (
	slotEnvName = "PYVISOR_SLOT"
	poolEnvName = "PYVISOR_POOL"
)

// options give a process of the slot in pool its environment: the slot's own, then
// PYVISOR_SLOT and PYVISOR_POOL, which nothing overrides.
func (s workerSlot) options(pool string) []bridge.Option {
	opts := make([]bridge.Option, 0, len(s.env)+2)
	for k, v := range s.env {
		opts = append(opts, bridge.WithEnv(k, v))
	}
	return append(opts, bridge.WithEnv(slotEnvName, strconv.Itoa(s.index)), bridge.WithEnv(poolEnvName, pool))
}
