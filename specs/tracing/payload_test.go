package tracing_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("A call with a payload", Label("python"), func() {
	attrs := func(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
		m := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			m[kv.Key] = kv.Value
		}
		return m
	}
	apiSpan := func(t *traced, name string) sdktrace.ReadOnlySpan {
		GinkgoHelper()
		for _, s := range t.recorder.Ended() {
			if s.Name() == name {
				return s
			}
		}
		Fail("no span " + name)
		return nil
	}

	It("puts its bytes in and out, and whether they went through shared memory, on its span", func() {
		t := startTraced(1)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := t.rt.Execute(ctx, "default", "echo_payload", nil, pyvisor.WithPayload(make([]byte, 1<<20)))
		Expect(err).NotTo(HaveOccurred())
		a := attrs(apiSpan(t, "execute echo_payload"))
		Expect(a).To(HaveKeyWithValue(attribute.Key("pyvisor.payload.bytes_in"), attribute.IntValue(1<<20)))
		Expect(a).To(HaveKeyWithValue(attribute.Key("pyvisor.payload.bytes_out"), attribute.IntValue(1<<20)))
		Expect(a).To(HaveKeyWithValue(attribute.Key("pyvisor.payload.shared_memory"), attribute.BoolValue(true)))

		_, err = t.rt.Execute(ctx, "default", "payload_size", nil, pyvisor.WithPayload([]byte("small")))
		Expect(err).NotTo(HaveOccurred())
		a = attrs(apiSpan(t, "execute payload_size"))
		Expect(a).To(HaveKeyWithValue(attribute.Key("pyvisor.payload.bytes_in"), attribute.IntValue(5)))
		Expect(a).NotTo(HaveKey(attribute.Key("pyvisor.payload.shared_memory")))
	})
})
