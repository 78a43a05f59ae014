package pyvisor_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/pyvisor/pyvisor"
)

// BenchmarkCallback compares the round trip of a no-op Go callback made from inside a
// running tool (what=callback: one op is one ctx.call_go("noop") of an async tool, the
// tool's own call amortized over b.N callbacks) with a plain Runtime.Execute of the
// no-op echo tool (what=execute), on the same one-worker pool. cmd/bench prints their
// ratio from one interleaved run.
func BenchmarkCallback(b *testing.B) {
	python := benchPython(b)
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	rt := startBenchRuntime(b, python, 1, pyvisor.WithCallback("noop", noop))
	ctx := context.Background()
	many := func(n int) error {
		_, err := rt.Execute(ctx, benchPool, "call_go_many", map[string]any{"name": "noop", "n": n})
		return err
	}
	warm(b, func(ctx context.Context) error { return many(10) })
	warm(b, func(ctx context.Context) error { return poolEcho(ctx, rt) })
	b.Run("what=execute", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := poolEcho(ctx, rt); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b)
	})
	b.Run("what=callback", func(b *testing.B) {
		b.ReportAllocs()
		if err := many(b.N); err != nil {
			b.Fatal(err)
		}
		reportRate(b)
	})
}
