package cluster

import (
	"context"
	"sync"
)

// idle lets Stop wait for a set of calls (the node's outgoing or incoming ones) to empty.
// Its owner calls emptied and waiter under mu, the lock that guards the set.
type idle struct{ ch chan struct{} }

// emptied wakes whoever waits: the set has just become empty.
func (w *idle) emptied() {
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// wait returns once the set, of n calls now (read under mu), is empty, or ctx ends.
func (w *idle) wait(ctx context.Context, mu *sync.Mutex, n func() int) {
	mu.Lock()
	if n() == 0 {
		mu.Unlock()
		return
	}
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	ch := w.ch
	mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}
