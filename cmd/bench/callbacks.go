package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pyvisor/pyvisor"
)

// callbacksPerCall is how many no-op callbacks one measured call of call_go_many makes.
const callbacksPerCall = 20

// callbacks measures the round trip of a no-op Go callback made from inside a running
// async tool, against a plain Runtime.Execute of the no-op echo tool, on one one-worker
// pool, interleaved: the echo call, call_go_many with 0 callbacks and with
// callbacksPerCall. A callback's round trip is the difference of the last two p50s over
// callbacksPerCall (the tool's own call cancels out).
func callbacks(ctx context.Context, s settings) (err error) {
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	rt, err := startRuntime(ctx, s.python, 1, pyvisor.WithCallback("noop", noop))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopRuntime(rt)) }()
	many := func(n int) call {
		args := json.RawMessage(fmt.Sprintf(`{"name": "noop", "n": %d}`, n))
		return func(ctx context.Context) error {
			_, err := rt.Execute(ctx, poolName, "call_go_many", args)
			return err
		}
	}
	execute := &path{name: "Runtime.Execute echo", call: poolCall(rt)}
	none := &path{name: "call_go_many n=0", call: many(0)}
	some := &path{name: fmt.Sprintf("call_go_many n=%d", callbacksPerCall), call: many(callbacksPerCall)}
	calls := s.calls / 4 // a call of some is 20 round trips: keep the step short
	if err := interleave(ctx, []*path{execute, none, some}, settings{calls: max(calls, latencyBlock), warmup: s.warmup / 4}); err != nil {
		return err
	}
	ex, zero, twenty := summarize(execute.d), summarize(none.d), summarize(some.d)
	callback := (twenty.p50 - zero.p50) / callbacksPerCall

	fmt.Printf("\nCallbacks: a no-op Go callback from inside an async tool (ctx.call_go), against a plain Runtime.Execute; pool of 1 worker, %d calls per path, interleaved\n", len(execute.d))
	w := table()
	fmt.Fprintln(w, "path\tp50 µs\tp90 µs\t")
	for _, p := range []struct {
		name string
		st   summary
	}{{execute.name, ex}, {none.name, zero}, {some.name, twenty}} {
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t\n", p.name, us(p.st.p50), us(p.st.p90))
	}
	fmt.Fprintf(w, "one callback: (p50 n=%d - p50 n=0) / %d\t%.0f\t\t\n", callbacksPerCall, callbacksPerCall, us(callback))
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("callback round trip / Runtime.Execute p50 = %.2f\n", float64(callback)/float64(ex.p50))
	return nil
}
