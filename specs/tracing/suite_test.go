package tracing_test

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
	"github.com/pyvisor/pyvisor/telemetry"
)

func TestTracing(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Tracing: one trace and one correlation id per call")
}

var (
	python     string
	runtimeDir string
)

var _ = BeforeSuite(func() { python, runtimeDir = harness.Suite("pvtr-") })

var _ = BeforeEach(func() { harness.CheckLeaks(runtimeDir) })

// traced is a runtime whose Go spans go to an in-memory recorder and whose Python spans
// are collected from the workers' stderr.
type traced struct {
	rt       *pyvisor.Runtime
	recorder *tracetest.SpanRecorder
	logs     *harness.Logs

	mu sync.Mutex
	py []pyvisor.PythonSpan
}

func startTraced(workers int, tweak ...func(*pyvisor.PoolConfig)) *traced {
	GinkgoHelper()
	return startSampled(sdktrace.ParentBased(sdktrace.AlwaysSample()), workers, tweak...)
}

// startSampled is startTraced with the Go side's sampler.
func startSampled(sampler sdktrace.Sampler, workers int, tweak ...func(*pyvisor.PoolConfig)) *traced {
	GinkgoHelper()
	return startTracedWith(sampler, nil, workers, tweak...)
}

// startTracedWith is startSampled with more options for Start.
func startTracedWith(sampler sdktrace.Sampler, opts []pyvisor.Option, workers int, tweak ...func(*pyvisor.PoolConfig)) *traced {
	GinkgoHelper()
	t := &traced{recorder: tracetest.NewSpanRecorder(), logs: &harness.Logs{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(t.recorder), sdktrace.WithSampler(sampler))
	pc := pyvisor.PoolConfig{Name: "default", Tools: []string{"pyvisor_worker.examples"}, Workers: workers}
	for _, f := range tweak {
		f(&pc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rt, err := pyvisor.Start(ctx, pyvisor.Config{Python: python, Pools: []pyvisor.PoolConfig{pc}}, append(opts,
		pyvisor.WithLogger(zerolog.New(t.logs)),
		pyvisor.WithTracerProvider(tp),
		pyvisor.WithPropagator(telemetry.Propagator()),
		pyvisor.WithPythonSpans(func(s pyvisor.PythonSpan) {
			t.mu.Lock()
			t.py = append(t.py, s)
			t.mu.Unlock()
		}))...)
	Expect(err).NotTo(HaveOccurred())
	t.rt = rt
	DeferCleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		Expect(rt.Stop(ctx)).To(Succeed())
		Expect(tp.Shutdown(ctx)).To(Succeed())
	})
	return t
}

// goSpans are the ended Go spans of one trace.
func (t *traced) goSpans(traceID string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range t.recorder.Ended() {
		if s.SpanContext().TraceID().String() == traceID {
			out = append(out, s)
		}
	}
	return out
}

// pySpans are the Python spans of one trace.
func (t *traced) pySpans(traceID string) []pyvisor.PythonSpan {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []pyvisor.PythonSpan
	for _, s := range t.py {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}

// goSpan finds the ended Go span named name, or nil.
func (t *traced) goSpan(name string) sdktrace.ReadOnlySpan {
	for _, s := range t.recorder.Ended() {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// node is one span of a chain, from either side.
type node struct{ name, id, parent string }

// chain follows parents from the leaf span named leaf up to the root, across both sides.
func (t *traced) chain(traceID, leaf string) []string {
	nodes := map[string]node{}
	var start string
	for _, s := range t.goSpans(traceID) {
		n := node{s.Name(), s.SpanContext().SpanID().String(), ""}
		if s.Parent().IsValid() {
			n.parent = s.Parent().SpanID().String()
		}
		nodes[n.id] = n
		if n.name == leaf {
			start = n.id
		}
	}
	for _, s := range t.pySpans(traceID) {
		nodes[s.SpanID] = node{s.Name, s.SpanID, s.ParentSpanID}
		if s.Name == leaf {
			start = s.SpanID
		}
	}
	var names []string
	for id := start; id != ""; id = nodes[id].parent {
		n, ok := nodes[id]
		if !ok {
			names = append(names, "<missing "+id+">")
			break
		}
		names = append([]string{n.name}, names...)
	}
	return names
}
