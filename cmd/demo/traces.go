package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/internal/spantree"
	"github.com/pyvisor/pyvisor/telemetry"
)

// The calls whose traces the demo prints, by the correlation id the scenario gives them.
const (
	cidAdd      = "demo-add"
	cidStream   = "demo-stream"
	cidCallback = "demo-callback"
	cidCrash    = "demo-crash"
	cidHang     = "demo-hang"
)

// shownCalls are the calls whose whole trace is printed, in scenario order.
var shownCalls = []string{cidAdd, cidStream, cidCallback, cidCrash}

// tracing is the demo's OpenTelemetry set-up: a tracer provider built from the OTEL_*
// environment (so OTEL_TRACES_EXPORTER=otlp|console still works), plus, for the console
// tree, an in-memory recorder of the Go spans and the Python spans the workers report.
type tracing struct {
	tp       *sdktrace.TracerProvider
	prop     propagation.TextMapPropagator
	recorder *tracetest.SpanRecorder // nil: no tree
	exporter string                  // OTEL_TRACES_EXPORTER, lower case
	down     bool                    // shut down

	mu sync.Mutex
	py []pyvisor.PythonSpan
}

// newTracing builds the provider and installs it and the W3C propagator as the
// OpenTelemetry globals (the demo is a composition root). tree asks for the console
// tree; with OTEL_TRACES_EXPORTER=otlp the spans go to the collector and the recorder
// only serves to name the traces to look up there.
func newTracing(ctx context.Context, tree bool, log zerolog.Logger) (*tracing, error) {
	t := &tracing{prop: telemetry.Propagator(), exporter: strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")))}
	var extra []sdktrace.SpanProcessor
	if tree {
		t.recorder = tracetest.NewSpanRecorder()
		extra = append(extra, t.recorder)
	}
	tp, err := telemetry.TracerProvider(ctx, extra...)
	if err != nil {
		return nil, err
	}
	t.tp = tp
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(t.prop)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn().Err(err).Msg("opentelemetry")
	}))
	return t, nil
}

// otlp says whether spans go to an OTLP collector.
func (t *tracing) otlp() bool { return slices.Contains(strings.Split(t.exporter, ","), "otlp") }

// options are the runtime's tracing options: the provider, the propagator and, for the
// console tree (not with OTLP, where the workers export their own spans), the Python
// span sink.
func (t *tracing) options() []pyvisor.Option {
	opts := []pyvisor.Option{pyvisor.WithTracerProvider(t.tp), pyvisor.WithPropagator(t.prop)}
	if t.recorder != nil && !t.otlp() {
		opts = append(opts, pyvisor.WithPythonSpans(func(s pyvisor.PythonSpan) {
			t.mu.Lock()
			t.py = append(t.py, s)
			t.mu.Unlock()
		}))
	}
	return opts
}

// pythonBatchDelay is the Python workers' span batch delay in OTLP mode, unless
// OTEL_BSP_SCHEDULE_DELAY says otherwise: the demo kills two workers on purpose, and a
// worker that dies loses the spans it has not exported yet (the default delay is 5 s).
const pythonBatchDelay = "200"

// adjust tunes the workers' environment for the demo's tracing: with OTLP, a short
// batch delay, so the spans of the calls just before a crash reach the collector.
func (t *tracing) adjust(cfg *pyvisor.Config, log zerolog.Logger) {
	if !t.otlp() {
		return
	}
	if _, set := os.LookupEnv("OTEL_BSP_SCHEDULE_DELAY"); set {
		return
	}
	for i := range cfg.Pools {
		if _, set := cfg.Pools[i].Env["OTEL_BSP_SCHEDULE_DELAY"]; set {
			continue
		}
		if cfg.Pools[i].Env == nil {
			cfg.Pools[i].Env = map[string]string{}
		}
		cfg.Pools[i].Env["OTEL_BSP_SCHEDULE_DELAY"] = pythonBatchDelay
	}
	log.Info().Str("OTEL_BSP_SCHEDULE_DELAY", pythonBatchDelay).
		Msg("the demo kills workers on purpose: their Python span batches go out every 200 ms, so few spans die with them")
}

// tracer is the demo's own tracer, for the spans it opens around calls.
func (t *tracing) tracer() trace.Tracer { return t.tp.Tracer("github.com/pyvisor/pyvisor/cmd/demo") }

// shutdown flushes what is batched (OTLP, console) and stops the provider; it is safe
// to call again.
func (t *tracing) shutdown(log zerolog.Logger) {
	if t.down {
		return
	}
	t.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.tp.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("demo: flushing the traces")
	}
}

// report prints, after the scenario, the trace tree of the shown calls and of the
// restarts (stderr; with -log-format json one log line per trace), or, with OTLP, where
// the spans went and which traces to look up.
func (t *tracing) report(w io.Writer, log zerolog.Logger, jsonLog bool) {
	if t.recorder == nil {
		return
	}
	if t.otlp() {
		t.reportOTLP(log)
		return
	}
	var blocks [][]string
	for _, cid := range shownCalls {
		root := t.apiSpan(cid)
		if root == nil {
			continue
		}
		id := root.SpanContext().TraceID().String()
		blocks = append(blocks, t.tree(id, fmt.Sprintf("trace %s  (%s, correlation id %s)", id, root.Name(), cid)))
	}
	for _, s := range t.recorder.Ended() {
		if !strings.HasPrefix(s.Name(), "restart ") {
			continue
		}
		var links []string
		for _, l := range s.Links() {
			id := l.SpanContext.TraceID().String()
			links = append(links, fmt.Sprintf("trace %s (%s)", id, t.rootName(id)))
		}
		head := fmt.Sprintf("trace %s  (%s: a trace of its own, linked to %s)", s.SpanContext().TraceID(), s.Name(), strings.Join(links, ", "))
		if len(links) == 0 {
			head = fmt.Sprintf("trace %s  (%s: a trace of its own; no call was in flight on the worker, so no link)", s.SpanContext().TraceID(), s.Name())
		}
		blocks = append(blocks, t.tree(s.SpanContext().TraceID().String(), head))
	}
	if len(blocks) == 0 {
		return
	}
	if jsonLog {
		for _, b := range blocks {
			log.Info().Str("trace", strings.Fields(b[0])[1]).Strs("tree", b[1:]).Msg("trace")
		}
		return
	}
	var sb strings.Builder
	sb.WriteString("\n── traces: Go (pyvisor) and Python (pyvisor-worker) spans of some calls, one tree per trace id ──\n")
	for _, b := range blocks {
		for _, line := range b {
			sb.WriteString(line)
			sb.WriteByte('\n')
		}
		sb.WriteByte('\n')
	}
	_, _ = io.WriteString(w, sb.String())
}

// reportOTLP logs where the spans went and the trace ids of the shown calls.
func (t *tracing) reportOTLP(log zerolog.Logger) {
	goProto := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	pyProto := goProto
	endpoint := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if goProto == "" {
		goProto, pyProto = "http/protobuf (Go's default)", "grpc (Python's default)"
	}
	ev := log.Info().Str("endpoint", cmp.Or(endpoint, "the default (localhost:4318 for http/protobuf, localhost:4317 for grpc)")).
		Str("go_protocol", goProto).Str("python_protocol", pyProto).
		Str("go_service", serviceName()).Str("python_service", cmp.Or(os.Getenv("PYVISOR_SERVICE_NAME"), "pyvisor-worker"))
	for _, cid := range shownCalls {
		if root := t.apiSpan(cid); root != nil {
			ev = ev.Str(cid, root.SpanContext().TraceID().String())
		}
	}
	ev.Msg("traces went to the OTLP collector (no console tree): look these trace ids up there")
	if strings.HasPrefix(goProto, "http/protobuf (") {
		log.Warn().Msg("OTEL_EXPORTER_OTLP_PROTOCOL is unset: Go sends http/protobuf and Python grpc; set it so both reach the same receiver")
	}
}

func serviceName() string {
	return cmp.Or(os.Getenv("OTEL_SERVICE_NAME"), telemetry.DefaultServiceName)
}

// apiSpan is the outermost Go span of the call with correlation id cid: the demo's own
// span around it if any, else the API span.
func (t *tracing) apiSpan(cid string) sdktrace.ReadOnlySpan {
	for _, s := range t.recorder.Ended() {
		if attr(s.Attributes(), "pyvisor.correlation_id") == cid && !s.Parent().IsValid() {
			return s
		}
	}
	return nil
}

// rootName is the name of the root span of a trace, as far as the recorder knows.
func (t *tracing) rootName(traceID string) string {
	for _, s := range t.recorder.Ended() {
		if s.SpanContext().TraceID().String() == traceID && !s.Parent().IsValid() {
			return s.Name()
		}
	}
	return "not recorded"
}

// tree renders one trace: a head line, then every span under its parent.
func (t *tracing) tree(traceID, head string) []string {
	var spans []spantree.Span
	for _, s := range t.recorder.Ended() {
		if s.SpanContext().TraceID().String() == traceID {
			spans = append(spans, spantree.FromGo(s, serviceName()))
		}
	}
	t.mu.Lock()
	for _, s := range t.py {
		if s.TraceID == traceID {
			spans = append(spans, spantree.FromPython(s))
		}
	}
	t.mu.Unlock()
	return spantree.Render(spans, head)
}

// attr is the value of the attribute key, "" if absent.
func attr(kvs []attribute.KeyValue, key string) string {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
