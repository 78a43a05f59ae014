package e2e_test

import (
	"context"
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
	"github.com/pyvisor/pyvisor/telemetry"
)

const (
	goService = telemetry.DefaultServiceName // "pyvisor"
	pyService = "pyvisor-worker"
)

// exportingRuntime starts a one-worker runtime whose Go and Python sides both export
// their spans over OTLP to j with protocol ("http/protobuf" or "grpc"), configured only
// through the OTEL_* variables. The returned stop ends the runtime and shuts the tracer provider down
// (flushing it); the spec calls it before asking Jaeger, and it runs again harmlessly at
// cleanup if the spec failed earlier.
func exportingRuntime(j *jaeger, protocol string, opts ...pyvisor.Option) (*pyvisor.Runtime, func()) {
	GinkgoHelper()
	endpoint := j.OTLPHTTP
	if protocol == "grpc" {
		endpoint = j.OTLPGRPC
	}
	setEnv(map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + endpoint,
		// Go's autoexport defaults to http/protobuf and Python's exporter to grpc: say it.
		"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
		// Nothing from the host may redirect or rename the spans.
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "",
		"OTEL_SERVICE_NAME":                  "",
		"OTEL_RESOURCE_ATTRIBUTES":           "",
		"OTEL_TRACES_SAMPLER":                "",
		"OTEL_TRACES_SAMPLER_ARG":            "",
		"OTEL_SDK_DISABLED":                  "",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tp, err := telemetry.TracerProvider(ctx)
	Expect(err).NotTo(HaveOccurred())
	rt, err := pyvisor.Start(ctx, pyvisor.Config{Python: python, Pools: []pyvisor.PoolConfig{
		{Name: "default", Tools: []string{"pyvisor_worker.examples"}, Workers: 1},
	}},
		append(opts,
			pyvisor.WithLogger(zerolog.New(&harness.Logs{})),
			pyvisor.WithTracerProvider(tp),
			pyvisor.WithPropagator(telemetry.Propagator()))...)
	if err != nil {
		_ = tp.Shutdown(ctx)
	}
	Expect(err).NotTo(HaveOccurred())
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		Expect(rt.Stop(ctx)).To(Succeed())
		Expect(tp.Shutdown(ctx)).To(Succeed(), "flushing the Go spans to Jaeger")
	}
	DeferCleanup(stop)
	return rt, stop
}

// chain follows parent references from the span named leaf up to the root and returns
// the names root first, each with its service.
func chain(spans []otlpSpan, leaf string) []string { return chainFrom(spans, "", leaf) }

// chainFrom is chain from the span named leaf of service (any service for "").
func chainFrom(spans []otlpSpan, service, leaf string) []string {
	byID := map[string]otlpSpan{}
	var start string
	for _, s := range spans {
		byID[s.SpanID] = s
		if s.Name == leaf && (service == "" || s.Service == service) {
			start = s.SpanID
		}
	}
	var names []string
	for id := start; id != ""; id = byID[id].ParentSpanID {
		s, ok := byID[id]
		if !ok {
			names = append([]string{"<missing " + id + ">"}, names...)
			break
		}
		names = append([]string{s.Service + ": " + s.Name}, names...)
	}
	return names
}

// traceOf returns the spans of the one trace Jaeger holds for operation (a Go API span).
func traceOf(j *jaeger, operation string) func(Gomega) []otlpSpan {
	return func(g Gomega) []otlpSpan {
		spans, err := j.findSpans(goService, operation)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(spans).NotTo(BeEmpty(), "no trace with %q in Jaeger yet", operation)
		traceID := spans[0].TraceID
		g.Expect(spans).To(HaveEach(HaveField("TraceID", traceID)), "one call, one trace")
		return spans
	}
}

var _ = Describe("Tracing into a real Jaeger v2", Label("e2e", "python"), func() {
	var j *jaeger
	BeforeEach(func() { j = startJaeger() })

	DescribeTable("stores one Execute as one trace holding both services' spans, parent by parent from the API call to the Python tool", func(protocol string) {
		rt, stop := exportingRuntime(j, protocol)
		res, err := rt.Execute(context.Background(), "default", "add", map[string]int{"a": 1, "b": 2})
		Expect(err).NotTo(HaveOccurred())
		var sum int
		Expect(res.Decode(&sum)).To(Succeed())
		Expect(sum).To(Equal(3))
		stop()

		want := []string{
			goService + ": execute add",
			goService + ": receive Execute",                          // the pool's mailbox, which grants the call
			goService + ": pyvisor.worker.v1.WorkerService/Execute",  // the call on the channel (CLIENT)
			pyService + ": /pyvisor.worker.v1.WorkerService/Execute", // gRPC server (Python)
			pyService + ": tool add",
		}
		// Spans reach the query API some milliseconds after export, the two services'
		// independently: poll until the whole chain is there.
		var spans []otlpSpan
		Eventually(func(g Gomega) {
			spans = traceOf(j, "execute add")(g)
			g.Expect(chain(spans, "tool add")).To(Equal(want))
		}).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		Expect(spans).To(ContainElement(HaveField("Service", goService)))
		Expect(spans).To(ContainElement(HaveField("Service", pyService)))
	},
		Entry("over OTLP HTTP/protobuf", "http/protobuf"),
		Entry("over OTLP gRPC", "grpc"),
	)

	It("stores a streaming call, chunks and all, as one trace across both services", func() {
		rt, stop := exportingRuntime(j, "http/protobuf")
		n := 0
		for _, err := range rt.Stream(context.Background(), "default", "count", map[string]int{"n": 3}) {
			Expect(err).NotTo(HaveOccurred())
			n++
		}
		Expect(n).To(Equal(3))
		stop()

		Eventually(func(g Gomega) {
			spans := traceOf(j, "stream count")(g)
			c := chain(spans, "tool count")
			g.Expect(c).To(Equal([]string{
				goService + ": stream count",
				goService + ": receive ExecuteStream",                          // the pool's mailbox
				goService + ": pyvisor.worker.v1.WorkerService/ExecuteStream",  // gRPC client
				pyService + ": /pyvisor.worker.v1.WorkerService/ExecuteStream", // gRPC server
				pyService + ": tool count",
			}))
			g.Expect(spans).To(ContainElement(And(
				HaveField("Name", "stream count"), HaveField("Events", HaveLen(3)))), "one event per chunk on the API span")
		}).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	})
})

var _ = Describe("A tool calling back into Go, traced into a real Jaeger v2", Label("e2e", "python"), func() {
	It("stores the callback inside the call's trace: the Python CLIENT span under the tool span, the Go SERVER span under it", func() {
		j := startJaeger()
		rt, stop := exportingRuntime(j, "http/protobuf", pyvisor.WithCallback("lookup_user",
			func(context.Context, json.RawMessage) (any, error) { return map[string]string{"name": "Ada"}, nil }))
		res, err := rt.Execute(context.Background(), "default", "greet", map[string]int{"user_id": 1})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.JSON).To(MatchJSON(`"Hello, Ada!"`))
		stop()

		Eventually(func(g Gomega) {
			spans := traceOf(j, "execute greet")(g)
			g.Expect(chainFrom(spans, goService, "callback lookup_user")).To(Equal([]string{
				goService + ": execute greet",
				goService + ": receive Execute",
				goService + ": pyvisor.worker.v1.WorkerService/Execute",
				pyService + ": /pyvisor.worker.v1.WorkerService/Execute",
				pyService + ": tool greet",
				pyService + ": callback lookup_user", // CLIENT
				goService + ": callback lookup_user", // SERVER
			}))
		}).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	})
})
