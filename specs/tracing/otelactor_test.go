package tracing_test

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/telemetry"
	"github.com/pyvisor/pyvisor/telemetry/otelactor"
)

type ping struct{}

// probe records the span context of each message it handles.
type probe struct {
	otelactor.Traced
	seen chan trace.SpanContext
}

func (p *probe) Receive(c actor.Context) {
	if _, ok := c.Message().(*ping); ok {
		p.seen <- trace.SpanContextFromContext(p.MessageContext())
	}
}

var _ = Describe("A message between actors", Label("unit"), func() {
	var (
		recorder *tracetest.SpanRecorder
		tracer   trace.Tracer
		system   *actor.ActorSystem
		pid      *actor.PID
		seen     chan trace.SpanContext
	)

	BeforeEach(func() {
		recorder = tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
		tracer = tp.Tracer("spec")
		system = actor.NewActorSystem()
		seen = make(chan trace.SpanContext, 1)
		pid = system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &probe{seen: seen} },
			actor.WithReceiverMiddleware(otelactor.ReceiverMiddleware(tp, telemetry.Propagator()))))
		DeferCleanup(func() {
			Expect(system.Root.PoisonFuture(pid).Wait()).To(Succeed())
			system.Shutdown()
		})
	})

	send := func(ctx context.Context, awaited bool) trace.SpanContext {
		system.Root.Send(pid, &actor.MessageEnvelope{
			Header:  otelactor.Inject(ctx, telemetry.Propagator(), "corr-1", awaited),
			Message: &ping{},
		})
		var got trace.SpanContext
		Eventually(seen).WithTimeout(5 * time.Second).Should(Receive(&got))
		return got
	}

	receiveSpan := func() sdktrace.ReadOnlySpan {
		GinkgoHelper()
		var span sdktrace.ReadOnlySpan
		Eventually(func() []sdktrace.ReadOnlySpan { return recorder.Ended() }).Should(ContainElement(
			WithTransform(func(s sdktrace.ReadOnlySpan) string { return s.Name() }, Equal("receive ping")), &span))
		return span
	}

	It("is received in a CONSUMER span that is the child of the sender's span when the sender awaits it", func() {
		ctx, sender := tracer.Start(context.Background(), "sender")
		got := send(ctx, true)
		sender.End()
		span := receiveSpan()
		Expect(span.SpanKind()).To(Equal(trace.SpanKindConsumer))
		Expect(span.Parent().SpanID()).To(Equal(sender.SpanContext().SpanID()))
		Expect(got.TraceID()).To(Equal(sender.SpanContext().TraceID()), "the actor works inside the receive span")
		Expect(span.Attributes()).To(ContainElement(HaveField("Key", BeEquivalentTo("pyvisor.correlation_id"))))
	})

	It("starts a trace of its own, linked to the sender's, when it is fire-and-forget", func() {
		ctx, sender := tracer.Start(context.Background(), "sender")
		got := send(ctx, false)
		sender.End()
		span := receiveSpan()
		Expect(span.Parent().IsValid()).To(BeFalse())
		Expect(got.TraceID()).NotTo(Equal(sender.SpanContext().TraceID()))
		Expect(span.Links()).To(ConsistOf(HaveField("SpanContext.SpanID()", sender.SpanContext().SpanID())))
	})

	It("carries an unsampled trace on without starting a span for it", func() {
		unsampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())).Tracer("spec")
		ctx, sender := unsampled.Start(context.Background(), "sender")
		got := send(ctx, true)
		sender.End()
		Expect(got.TraceID()).To(Equal(sender.SpanContext().TraceID()), "the trace goes on, unsampled")
		Expect(got.IsSampled()).To(BeFalse())
		Consistently(recorder.Ended).WithTimeout(100 * time.Millisecond).Should(BeEmpty())
	})

	It("is not traced at all when it carries no trace context", func() {
		system.Root.Send(pid, &ping{})
		var got trace.SpanContext
		Eventually(seen).Should(Receive(&got))
		Expect(got.IsValid()).To(BeFalse())
		Expect(recorder.Ended()).To(BeEmpty())
	})

	It("keeps the correlation id header", func() {
		h := otelactor.Inject(context.Background(), telemetry.Propagator(), "corr-9", true)
		Expect(h).To(HaveKeyWithValue(messages.HeaderCorrelationID, "corr-9"))
		Expect(h).To(HaveKeyWithValue(otelactor.ReplyHeader, "1"))
	})
})
