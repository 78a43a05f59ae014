package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"

	"github.com/pyvisor/pyvisor/bridge"
)

var _ = Describe("A worker's Go callbacks", Label("python"), func() {
	double := func(_ context.Context, args json.RawMessage) (any, error) {
		var in struct{ N int }
		if err := json.Unmarshal(args, &in); err != nil {
			return nil, err
		}
		return in.N * 2, nil
	}

	It("are listed by Describe, as the worker was told at its start", func() {
		p, _ := worker(bridge.WithCallback("double", double), bridge.WithCallback("lookup_user", double))
		info, err := p.Client().Describe(context.Background())
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Callbacks).To(Equal([]string{"double", "lookup_user"}))
	})

	It("are none for a worker started without any, whose tools get unknown_callback at once", func() {
		p, _ := worker()
		info, err := p.Client().Describe(context.Background())
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Callbacks).To(BeEmpty())
		Expect(decoded(p, "call_go", map[string]any{"name": "double"})).To(HaveKeyWithValue("error", And(
			HaveKeyWithValue("kind", "unknown_callback"),
			HaveKeyWithValue("message", "no Go callback 'double' (registered: none)"),
		)))
	})

	It("run for a call made on the bridge's client directly, each observed with its outcome", func() {
		type seen struct{ name, outcome string }
		observed := make(chan seen, 4)
		p, _ := worker(bridge.WithCallback("double", double),
			bridge.WithCallbackObserver(func(_ context.Context, name, outcome string, took time.Duration) {
				observed <- seen{name, outcome}
			}))
		Expect(decoded(p, "call_go", map[string]any{"name": "double", "args": map[string]int{"N": 21}})).
			To(HaveKeyWithValue("result", BeNumerically("==", 42)))
		Expect(observed).To(Receive(Equal(seen{"double", "ok"})))
		Expect(decoded(p, "call_go", map[string]any{"name": "double", "args": map[string]string{"N": "x"}})).
			To(HaveKeyWithValue("error", HaveKeyWithValue("kind", "error")))
		Expect(observed).To(Receive(Equal(seen{"double", "error"})))
	})

	It("refuse a result over the message limit with kind message_too_large", func() {
		p, _ := worker(bridge.WithMaxMessageBytes(1024), bridge.WithCallback("big", func(context.Context, json.RawMessage) (any, error) {
			return string(make([]byte, 2048)), nil
		}))
		Expect(decoded(p, "call_go", map[string]any{"name": "big"})).To(HaveKeyWithValue("error", And(
			HaveKeyWithValue("kind", "message_too_large"),
			HaveKeyWithValue("message", ContainSubstring("over the limit of 1024 bytes")),
		)))
		stillServes(p)
	})

	It("refuse a bad name at Start", func() {
		_, err := bridge.Start(context.Background(), bridge.WithPython(python), bridge.WithTools("pyvisor_worker.examples"),
			bridge.WithCallback("two words", double))
		Expect(err).To(MatchError(ContainSubstring(`callback name "two words" has spaces or control characters`)))
		_, err = bridge.Start(context.Background(), bridge.WithPython(python), bridge.WithTools("pyvisor_worker.examples"),
			bridge.WithCallback("bad\xffname", double))
		Expect(err).To(MatchError(ContainSubstring(`is not UTF-8`)))
	})

	It("turn a panic in encoding the result (a MarshalJSON) into kind panic, and go on serving", func() {
		p, _ := worker(bridge.WithCallback("bad_json", func(context.Context, json.RawMessage) (any, error) {
			return panickyJSON{}, nil
		}))
		Expect(decoded(p, "call_go", map[string]any{"name": "bad_json"})).To(HaveKeyWithValue("error", And(
			HaveKeyWithValue("kind", "panic"),
			HaveKeyWithValue("message", ContainSubstring("MarshalJSON blew up")),
		)))
		stillServes(p)
	})

	DescribeTable("keep an error's text from breaking the channel for the other calls",
		func(text string, want types.GomegaMatcher) {
			p, _ := worker(bridge.WithCallback("fail", func(context.Context, json.RawMessage) (any, error) {
				return nil, errors.New(text)
			}))
			sibling := make(chan error, 1)
			go func() { _, err := call(p, "sleep", map[string]float64{"seconds": 0.5}); sibling <- err }()
			Expect(decoded(p, "call_go", map[string]any{"name": "fail"})).To(HaveKeyWithValue("error", And(
				HaveKeyWithValue("kind", "error"),
				HaveKeyWithValue("message", want),
			)))
			Eventually(sibling).WithTimeout(5*time.Second).Should(Receive(BeNil()), "the call beside it is untouched")
			stillServes(p)
		},
		Entry("text that is not UTF-8", "bad \xff byte", Equal("bad \uFFFD byte")),
		Entry("text of 2 MiB", strings.Repeat("x", 2<<20), And(HaveLen(64<<10+len("... (cut at 64 KiB)")), HaveSuffix("... (cut at 64 KiB)"))),
	)

	It("report a function that returns its context's cause after Python withdrew it as cancelled", func() {
		outcomes := make(chan string, 1)
		p, _ := worker(bridge.WithCallback("block", func(ctx context.Context, _ json.RawMessage) (any, error) {
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}), bridge.WithCallbackObserver(func(_ context.Context, _, outcome string, _ time.Duration) { outcomes <- outcome }))
		Expect(decoded(p, "call_go_timeout", map[string]any{"name": "block", "seconds": 0.1})).To(Equal("timed out"))
		Eventually(outcomes).Should(Receive(Equal("cancelled")))
	})
})

// panickyJSON is a result whose encoding panics.
type panickyJSON struct{}

func (panickyJSON) MarshalJSON() ([]byte, error) { panic("MarshalJSON blew up") }
