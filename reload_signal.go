package pyvisor

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// ReloadOnSignal reloads every pool, one after the other in configuration order, each
// time the process receives one of sigs (SIGHUP when none is given), and logs each pool's
// result with the runtime's logger: the versions before and after, or why the reload
// failed. Signals that arrive during a round bring one more round after it.
//
// It goes on until ctx ends, the runtime stops or stop is called. stop restores the
// signals' handling as it was before (for SIGHUP alone: it ends the process again) and
// returns once no reload runs; a reload under way is abandoned (see Reload). stop may be
// called more than once. See docs/upgrades.md.
func (r *Runtime) ReloadOnSignal(ctx context.Context, sigs ...os.Signal) (stop func()) {
	if len(sigs) == 0 {
		sigs = []os.Signal{syscall.SIGHUP}
	}
	got := make(chan os.Signal, 1)
	signal.Notify(got, sigs...)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(got)
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.done:
				return
			case sig := <-got:
				for _, pool := range r.order {
					_ = r.reloadLogged(ctx, pool, "signal "+sig.String())
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
