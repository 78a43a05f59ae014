// Package lifecycle holds the one error every layer of pyvisor ends a call or a request
// with once what it needs has stopped (a worker, a pool, a supervisor, the runtime):
// bridge, actors, supervision and the pyvisor facade export it under their own names,
// so errors.Is(err, pyvisor.ErrStopped) matches whichever layer said it.
package lifecycle

import "errors"

// ErrStopped: stopped, or stopping; it takes no more work.
var ErrStopped = errors.New("stopped")
