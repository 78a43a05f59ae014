package actors

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// every runs tick on a goroutine of its own each interval until the pool stops, with a
// context that ends then; tick sends the pool what it found with send. The pool's own
// state stays on the pool's goroutine: tick reads only what is safe to read elsewhere.
func (p *pool) every(ctx actor.Context, interval time.Duration, tick func(ctx context.Context, send func(msg any))) {
	system, self := ctx.ActorSystem(), ctx.Self()
	tctx, stop := context.WithCancel(context.Background())
	p.onStop(stop)
	send := func(msg any) { system.Root.Send(self, msg) }
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				tick(tctx, send)
			case <-tctx.Done():
				return
			}
		}
	}()
}

// onStop registers what ends with the pool: tickers, metric callbacks.
func (p *pool) onStop(stop func()) { p.stops = append(p.stops, stop) }

// stopAll runs what onStop registered, once.
func (p *pool) stopAll() {
	for _, stop := range p.stops {
		stop()
	}
	p.stops = nil
}
