package pyvisor_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/telemetry"
)

// BenchmarkTracing measures what tracing adds to one call, on the Go side: a sequential
// 100-byte echo through Runtime.Execute on a one-worker pool, with
//
//   - tracing=off: a no-op tracer provider (what a program that installs none gets: the
//     runtime then leaves out the receive-span middleware and the otelgrpc handler);
//   - tracing=sampled: the SDK, every call sampled (AlwaysSample), spans batched to an
//     exporter that discards them, so the figure is the cost of making, propagating and
//     batching the spans, not of any network;
//   - tracing=unsampled: the SDK with NeverSample: spans are decided against and only the
//     trace context travels;
//   - tracing=sampled-unbatched: tracing=sampled with no span processor at all, which
//     shows what the batch processor costs in a real call.
//
// The Python side traces nothing in any mode (no span sink, so PYVISOR_TRACE_STDERR is
// not set, and OTEL_TRACES_EXPORTER=none in the worker's environment whatever the host's
// says), so the differences are the Go side's cost. The propagator is W3C trace context
// plus baggage in every mode, so only the tracer provider differs.
//
// Each mode has its own runtime (a provider is fixed at Start), all started up front and
// measured in one run. Besides ns/op and allocs/op, go-cpu-ns/op is the CPU time the Go
// process spent per call (getrusage, all its threads, the batch processor included):
// the Go side's cost without the Python process's. Read it next to ns/op: two Python
// processes of the same code can answer tens of microseconds apart on a small machine,
// so a wall-clock difference between modes smaller than that is noise. Compare medians:
//
//	go test -run='^$' -bench=BenchmarkTracing -count=5 .
//
// (docs/observability.md quotes them.)
func BenchmarkTracing(b *testing.B) {
	python := benchPython(b)
	sampled := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(discardExporter{}))
	unsampled := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.NeverSample()),
		sdktrace.WithBatcher(discardExporter{}))
	unbatched := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { // after the runtimes' Stop (cleanups run last first)
		_ = sampled.Shutdown(context.Background())
		_ = unsampled.Shutdown(context.Background())
		_ = unbatched.Shutdown(context.Background())
	})
	modes := []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"off", noop.NewTracerProvider()},
		{"sampled", sampled},
		{"unsampled", unsampled},
		{"sampled-unbatched", unbatched},
	}
	// Start every pool first, so the sub-benchmarks (run several times each while the
	// benchmark framework settles b.N) reuse them.
	runtimes := make([]*pyvisor.Runtime, len(modes))
	for i, m := range modes {
		runtimes[i] = startBenchRuntime(b, python, 1, pyvisor.WithTracerProvider(m.tp), pyvisor.WithPropagator(telemetry.Propagator()))
	}
	ctx := context.Background()
	for i, m := range modes {
		rt := runtimes[i]
		call := func() error {
			_, err := rt.Execute(ctx, "bench", "echo", benchArgs)
			return err
		}
		for range 200 { // warm up: gRPC connection, Python's caches
			if err := call(); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("tracing="+m.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := goCPUTime()
			n := 0
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(goCPUTime()-cpu)/float64(n), "go-cpu-ns/op")
		})
	}
}

// discardExporter is a SpanExporter that drops every span: the batch processor still
// does all its work, the spans just go nowhere.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkSpanFloor measures what the OpenTelemetry SDK alone costs for a call's three
// Go spans (API, the pool's receive, the gRPC client: start, nest, end) right after an
// idle gap, as between two calls to Python, with the batch processor of
// BenchmarkTracing and with no processor. The figure is span-ns/op: the spans' time
// alone (ns/op includes the 400 µs gap, which keeps the run short). Alone, the batch
// processor costs the most here: it wakes its goroutine for every span that ends, and
// waking an idle thread is what costs on a small machine. In a real call that cost
// hides behind gRPC's own wake-ups: compare BenchmarkTracing's sampled and
// sampled-unbatched.
func BenchmarkSpanFloor(b *testing.B) {
	for _, mode := range []string{"batch", "none"} {
		b.Run("processor="+mode, func(b *testing.B) {
			opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.AlwaysSample())}
			if mode == "batch" {
				opts = append(opts, sdktrace.WithBatcher(discardExporter{}))
			}
			tp := sdktrace.NewTracerProvider(opts...)
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			tracer := tp.Tracer("floor")
			b.ReportAllocs()
			var spans time.Duration
			n := 0
			for b.Loop() {
				time.Sleep(400 * time.Microsecond)
				began := time.Now()
				ctx, api := tracer.Start(context.Background(), "execute echo")
				ctx, receive := tracer.Start(ctx, "receive Execute")
				receive.End()
				_, client := tracer.Start(ctx, "pyvisor.worker.v1.WorkerService/Execute")
				client.End()
				api.End()
				spans += time.Since(began)
				n++
			}
			b.ReportMetric(float64(spans.Nanoseconds())/float64(n), "span-ns/op")
		})
	}
}
