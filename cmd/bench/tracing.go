package main

import (
	"context"
	"errors"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/internal/reference"
	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/telemetry"
)

// tracingCost measures what tracing adds to a pool call on the Go side (the workers
// trace nothing: see config): off (a no-op provider), sampled (the SDK, every call
// sampled, spans batched to an exporter that drops them) and unsampled (the SDK, no
// call sampled: only the trace context travels).
//
// Each mode needs a runtime, so a Python process, of its own, and two Python processes
// of the same code can answer tens of microseconds apart. So each pool is measured
// against a bare Go client on a channel of its own to the same process (call frames,
// nothing of pyvisor's around them: the pool's path without the pool), all six paths
// interleaved, and what tracing adds is the difference between a mode's pool-over-bare
// and off's. The runtime
// takes shortcuts by the provider's type (a no-op one switches tracing off altogether),
// so the modes cannot share one runtime behind a switchable provider.
func tracingCost(ctx context.Context, s settings) (err error) {
	sampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
	unsampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithBatcher(discard{}))
	var cleanups []func() error
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			err = errors.Join(err, cleanups[i]())
		}
		err = errors.Join(err, sampled.Shutdown(context.Background()), unsampled.Shutdown(context.Background()))
	}()
	modes := []struct {
		name string
		tp   trace.TracerProvider
	}{{"off", noop.NewTracerProvider()}, {"sampled", sampled}, {"unsampled", unsampled}}
	var paths []*path
	for _, m := range modes {
		rt, err := startRuntime(ctx, s.python, 1, pyvisor.WithTracerProvider(m.tp), pyvisor.WithPropagator(telemetry.Propagator()))
		if err != nil {
			return fmt.Errorf("tracing %s: %w", m.name, err)
		}
		cleanups = append(cleanups, func() error { return stopRuntime(rt) })
		conn, err := dialWorker(ctx, rt)
		if err != nil {
			return fmt.Errorf("tracing %s: %w", m.name, err)
		}
		cleanups = append(cleanups, conn.Close)
		bare, err := reference.OpenChannel(workerv1.NewWorkerServiceClient(conn))
		if err != nil {
			return fmt.Errorf("tracing %s: %w", m.name, err)
		}
		cleanups = append(cleanups, func() error { bare.Close(); return nil })
		paths = append(paths,
			&path{name: "bare channel, " + m.name, call: bare.Echo},
			&path{name: "pool, tracing " + m.name, call: poolCall(rt)})
	}
	if err := interleave(ctx, paths, s); err != nil {
		return err
	}

	fmt.Printf("\nTracing: what it adds to a pool call on the Go side (the workers trace nothing), 100-byte echo, %d calls per path, interleaved\n", s.calls)
	fmt.Println("(each mode has its own runtime and Python process; each pool is compared with a bare Go channel client to its own process;")
	fmt.Println(" a percentage is of the untraced pool's p50; \"raw\" compares the pools' p50s without the bare correction)")
	w := table()
	fmt.Fprintln(w, "tracing\tpool p50\tbare p50\tpool over bare\tadded at p50\tadded %\traw added\traw %\t")
	pool := func(i int) float64 { return us(summarize(paths[2*i+1].d).p50) }
	over := func(i int) float64 { return pool(i) - us(summarize(paths[2*i].d).p50) }
	added := func(i int) (float64, float64) { a := over(i) - over(0); return a, 100 * a / pool(0) }
	for i, m := range modes {
		cells := "-\t-\t-\t-"
		if i > 0 {
			d, p := added(i)
			raw := pool(i) - pool(0)
			cells = fmt.Sprintf("%+.1f µs\t%+.1f %%\t%+.1f µs\t%+.1f %%", d, p, raw, 100*raw/pool(0))
		}
		fmt.Fprintf(w, "%s\t%.1f µs\t%.1f µs\t%+.1f µs\t%s\t\n", m.name, pool(i), us(summarize(paths[2*i].d).p50), over(i), cells)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, sampledPct := added(1)
	_, unsampledPct := added(2)
	fmt.Printf("sampled adds %.1f %% (goal <= 10 %%)\n", sampledPct)
	fmt.Printf("unsampled adds %.1f %% (goal <= 2 %%)\n", unsampledPct)
	return nil
}

// discard is a span exporter that drops every span: the batch processor still does all
// its work, the spans just go nowhere.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
