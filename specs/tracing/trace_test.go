package tracing_test

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/telemetry"
)

var _ = Describe("One Execute", Label("python"), func() {
	It("is one trace: API span, the pool's receive span, the channel call's client span, its Python server span and the tool span, each the parent of the next", func() {
		t := startTraced(1)
		_, err := t.rt.Execute(context.Background(), "default", "add", map[string]int{"a": 1, "b": 2})
		Expect(err).NotTo(HaveOccurred())

		api := t.goSpan("execute add")
		Expect(api).NotTo(BeNil())
		traceID := api.SpanContext().TraceID().String()
		Eventually(func() []string { return t.chain(traceID, "tool add") }).Should(Equal([]string{
			"execute add",
			"receive Execute", // the pool's mailbox: the one hop; the caller then runs the call on the worker's process
			"pyvisor.worker.v1.WorkerService/Execute",  // the call on the worker's channel (Go, CLIENT)
			"/pyvisor.worker.v1.WorkerService/Execute", // its Python side (SERVER, named as the gRPC instrumentation names it)
			"tool add",
		}))
		Expect(t.pySpans(traceID)).To(HaveEach(HaveField("Service", "pyvisor-worker")))
	})

	It("carries the call's correlation id on every span of the call", func() {
		t := startTraced(1)
		ctx := telemetry.WithCorrelationID(context.Background(), "req-7")
		_, err := t.rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 2})
		Expect(err).NotTo(HaveOccurred())
		traceID := t.goSpan("execute add").SpanContext().TraceID().String()
		Eventually(func() []pyvisor.PythonSpan { return t.pySpans(traceID) }).Should(HaveLen(2))
		Expect(t.goSpans(traceID)).To(ContainElement(HaveField("SpanKind()", trace.SpanKindClient)))
		for _, s := range t.goSpans(traceID) {
			Expect(attr(s, "pyvisor.correlation_id")).To(Equal("req-7"), s.Name())
		}
		for _, s := range t.pySpans(traceID) {
			Expect(s.Attributes).To(HaveKeyWithValue("pyvisor.correlation_id", "req-7"), s.Name)
		}
	})

	It("gives the call's client and server spans the rpc attributes gRPC instrumentation sets", func() {
		t := startTraced(1)
		_, err := t.rt.Execute(context.Background(), "default", "add", map[string]int{"a": 1, "b": 2})
		Expect(err).NotTo(HaveOccurred())
		traceID := t.goSpan("execute add").SpanContext().TraceID().String()
		client := t.goSpan("pyvisor.worker.v1.WorkerService/Execute")
		Expect(client).NotTo(BeNil())
		Expect(client.SpanKind()).To(Equal(trace.SpanKindClient))
		Expect(attr(client, "rpc.system")).To(Equal("grpc"))
		Expect(attr(client, "rpc.service")).To(Equal("pyvisor.worker.v1.WorkerService"))
		Expect(attr(client, "rpc.method")).To(Equal("Execute"))
		Expect(attr(client, "rpc.grpc.status_code")).To(Equal("0"))
		Eventually(func() []pyvisor.PythonSpan { return t.pySpans(traceID) }).Should(ContainElement(And(
			HaveField("Name", "/pyvisor.worker.v1.WorkerService/Execute"),
			HaveField("Kind", "SERVER"),
			HaveField("Attributes", And(
				HaveKeyWithValue("rpc.system", "grpc"),
				HaveKeyWithValue("rpc.service", "pyvisor.worker.v1.WorkerService"),
				HaveKeyWithValue("rpc.method", "Execute"),
				HaveKeyWithValue("rpc.grpc.status_code", BeNumerically("==", 0)),
			)),
		)))
	})

	It("puts a waiting call's queue time in the trace", func() {
		t := startTraced(1)
		go func() {
			_, _ = t.rt.Execute(context.Background(), "default", "sleep", map[string]float64{"seconds": 0.3})
		}()
		Eventually(func() int { st, _ := t.rt.Stats(context.Background()); return st[0].Workers[0].InFlight }).Should(Equal(1))
		_, err := t.rt.Execute(context.Background(), "default", "add", map[string]int{"a": 1, "b": 2})
		Expect(err).NotTo(HaveOccurred())
		traceID := t.goSpan("execute add").SpanContext().TraceID().String()
		Eventually(func() []string { return t.chain(traceID, "tool add") }).Should(ContainElement("queue wait"))
	})
})

var _ = Describe("A streaming call", Label("python"), func() {
	It("keeps its chunks inside the same trace", func() {
		t := startTraced(1)
		n := 0
		for _, err := range t.rt.Stream(context.Background(), "default", "count", map[string]int{"n": 4}) {
			Expect(err).NotTo(HaveOccurred())
			n++
		}
		Expect(n).To(Equal(4))
		api := t.goSpan("stream count")
		Expect(api).NotTo(BeNil())
		Expect(api.Events()).To(HaveLen(4))
		traceID := api.SpanContext().TraceID().String()
		Eventually(func() []string { return t.chain(traceID, "tool count") }).Should(Equal([]string{
			"stream count",
			"receive ExecuteStream",
			"pyvisor.worker.v1.WorkerService/ExecuteStream",
			"/pyvisor.worker.v1.WorkerService/ExecuteStream",
			"tool count",
		}))
	})
})

var _ = Describe("A call that kills its worker", Label("python"), func() {
	It("shows the restart span linked back to the call", func() {
		t := startTraced(1)
		_, err := t.rt.Execute(context.Background(), "default", "crash", nil)
		Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed))
		api := t.goSpan("execute crash")
		Expect(api).NotTo(BeNil())
		Eventually(func() bool { return t.goSpan("restart default-0") != nil }).Should(BeTrue())
		restart := t.goSpan("restart default-0")
		Expect(attr(restart, "pyvisor.restart.reason")).To(Equal("crash"))
		Expect(attr(restart, "pyvisor.failure.stack")).NotTo(BeEmpty())
		var linkedTraces []string
		for _, l := range restart.Links() {
			linkedTraces = append(linkedTraces, l.SpanContext.TraceID().String())
		}
		Expect(linkedTraces).To(ContainElement(api.SpanContext().TraceID().String()))
	})
})

var _ = Describe("A call whose trace is not sampled", Label("python"), func() {
	It("records no span on either side, yet hands its trace on to Python, whose log lines join it", func() {
		t := startSampled(sdktrace.NeverSample(), 1)
		caller := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())).Tracer("caller")
		ctx, span := caller.Start(context.Background(), "caller")
		defer span.End()
		_, err := t.rt.Execute(ctx, "default", "log", map[string]string{"message": "from an unsampled call"})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() []map[string]any { return t.logs.Matching("from an unsampled call") }).Should(ContainElement(And(
			HaveKeyWithValue("source", "python"),
			HaveKeyWithValue("trace_id", span.SpanContext().TraceID().String()),
		)), "Python got the trace context: with none, it would have started a trace of its own")
		Expect(t.recorder.Ended()).To(BeEmpty())
		Consistently(func() []pyvisor.PythonSpan { return t.pySpans(span.SpanContext().TraceID().String()) }).
			WithTimeout(300 * time.Millisecond).Should(BeEmpty())
		t.mu.Lock()
		defer t.mu.Unlock()
		Expect(t.py).To(BeEmpty(), "nor did Python sample a trace of its own")
	})
})

var _ = Describe("Logs of one call", Label("python"), func() {
	It("carry the same correlation id and trace id on both sides, and a caller's id is kept", func() {
		t := startTraced(1)
		ctx := telemetry.WithCorrelationID(context.Background(), "caller-42")
		_, err := t.rt.Execute(ctx, "default", "log", map[string]string{"message": "from the tool"})
		Expect(err).NotTo(HaveOccurred())
		traceID := t.goSpan("execute log").SpanContext().TraceID().String()
		Eventually(func() []map[string]any { return t.logs.Matching("from the tool") }).Should(ContainElement(And(
			HaveKeyWithValue("source", "python"),
			HaveKeyWithValue("correlation_id", "caller-42"),
			HaveKeyWithValue("trace_id", traceID),
		)))
		_, err = t.rt.Execute(ctx, "default", "no_such_tool", nil)
		Expect(err).To(MatchError(ContainSubstring("caller-42")), "errors name the correlation id")
		Eventually(func() []map[string]any { return t.logs.Matching("execute failed") }).Should(ContainElement(And(
			HaveKeyWithValue("correlation_id", "caller-42"),
			HaveKey("trace_id"),
		)))
	})
})

// attr is the string value of a span attribute, "" if absent.
func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

var _ = Describe("Heartbeat pings", Label("python"), func() {
	beat := func(trace bool) func(*pyvisor.PoolConfig) {
		return func(p *pyvisor.PoolConfig) {
			p.Heartbeat = pyvisor.HeartbeatConfig{Enabled: true, Interval: 100 * time.Millisecond, Timeout: time.Second, Trace: trace}
		}
	}

	It("stay out of the traces by default", func() {
		t := startTraced(1, beat(false))
		Eventually(func() uint64 { st, _ := t.rt.Stats(context.Background()); return st[0].Workers[0].HeartbeatPings }).Should(BeNumerically(">=", 3))
		Expect(t.goSpan("heartbeat")).To(BeNil())
		t.mu.Lock()
		defer t.mu.Unlock()
		Expect(t.py).To(BeEmpty())
	})

	It("get short traces of their own, on both sides, when configured", func() {
		t := startTraced(1, beat(true))
		Eventually(func() bool { return t.goSpan("heartbeat") != nil }).Should(BeTrue())
		hb := t.goSpan("heartbeat")
		Expect(hb.Parent().IsValid()).To(BeFalse(), "a trace of its own")
		Eventually(func() []pyvisor.PythonSpan { return t.pySpans(hb.SpanContext().TraceID().String()) }).Should(
			ContainElement(HaveField("Name", HaveSuffix("WorkerService/Heartbeat"))))
	})
})

var _ = Describe("A tool calling back into Go", Label("python"), func() {
	It("stays in the call's trace: tool span, Python CLIENT span, Go SERVER span of the callback, and on into what the callback calls", func() {
		var rt *pyvisor.Runtime
		t := startTracedWith(sdktrace.ParentBased(sdktrace.AlwaysSample()), []pyvisor.Option{
			pyvisor.WithCallback("add_in_go", func(ctx context.Context, _ json.RawMessage) (any, error) {
				zerolog.Ctx(ctx).Info().Msg("adding in go")
				res, err := rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 2})
				return res.JSON, err
			}),
		}, 1, func(p *pyvisor.PoolConfig) { p.MaxConcurrent = 2 })
		rt = t.rt
		ctx := telemetry.WithCorrelationID(context.Background(), "cb-trace-1")
		res, err := rt.Execute(ctx, "default", "call_go", map[string]any{"name": "add_in_go"})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.JSON).To(MatchJSON(`{"result": 3}`))

		traceID := t.goSpan("execute call_go").SpanContext().TraceID().String()
		Eventually(func() []string { return t.chain(traceID, "tool add") }).Should(Equal([]string{
			"execute call_go",
			"receive Execute",
			"pyvisor.worker.v1.WorkerService/Execute",
			"/pyvisor.worker.v1.WorkerService/Execute",
			"tool call_go",
			"callback add_in_go", // Python: CLIENT
			"callback add_in_go", // Go: SERVER, running the function
			"execute add",        // what the function called, in the same trace
			"receive Execute",
			"pyvisor.worker.v1.WorkerService/Execute",
			"/pyvisor.worker.v1.WorkerService/Execute",
			"tool add",
		}))
		server := t.goSpan("callback add_in_go")
		Expect(server.SpanKind()).To(Equal(trace.SpanKindServer))
		Expect(attr(server, "pyvisor.callback")).To(Equal("add_in_go"))
		Expect(attr(server, "pyvisor.correlation_id")).To(Equal("cb-trace-1"))
		Expect(t.pySpans(traceID)).To(ContainElement(And(
			HaveField("Name", "callback add_in_go"),
			HaveField("Kind", "CLIENT"),
			HaveField("SpanID", server.Parent().SpanID().String()),
			HaveField("Attributes", HaveKeyWithValue("pyvisor.correlation_id", "cb-trace-1")),
		)))
		Expect(t.logs.Matching("adding in go")).To(ContainElement(And(
			HaveKeyWithValue("correlation_id", "cb-trace-1"),
			HaveKeyWithValue("trace_id", traceID),
			HaveKeyWithValue("span_id", server.SpanContext().SpanID().String()),
		)))
	})

	It("marks the callback's spans on both sides as errors when it fails", func() {
		t := startTracedWith(sdktrace.ParentBased(sdktrace.AlwaysSample()), []pyvisor.Option{
			pyvisor.WithCallback("fail", func(context.Context, json.RawMessage) (any, error) {
				return nil, errors.New("out of stock")
			}),
		}, 1)
		_, err := t.rt.Execute(context.Background(), "default", "call_go", map[string]any{"name": "fail"})
		Expect(err).NotTo(HaveOccurred())
		server := t.goSpan("callback fail")
		Expect(server.Status().Code).To(Equal(codes.Error))
		Expect(server.Status().Description).To(Equal("error: out of stock"))
		traceID := server.SpanContext().TraceID().String()
		Eventually(func() []pyvisor.PythonSpan { return t.pySpans(traceID) }).Should(ContainElement(And(
			HaveField("Name", "callback fail"),
			HaveField("Status", "ERROR"),
			HaveField("Attributes", HaveKeyWithValue("pyvisor.callback.error_kind", "error")),
		)))
	})
})
