package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/supervision"
)

// script writes an executable shell script standing in for the Python interpreter.
func script(body string) string {
	GinkgoHelper()
	path := filepath.Join(GinkgoT().TempDir(), "python")
	Expect(os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755)).To(Succeed())
	return path
}

var _ = Describe("The pyvisor API", Label("python"), func() {
	It("takes nil providers, a nil span sink and a zero logger as the defaults", func() {
		rt, err := pyvisor.Start(context.Background(), pool(1),
			pyvisor.WithTracerProvider(nil), pyvisor.WithMeterProvider(nil), pyvisor.WithPropagator(nil),
			pyvisor.WithPythonSpans(nil), pyvisor.WithLogger(zerolog.Logger{}))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(rt.Stop(context.Background())).To(Succeed()) })
		Expect(execute(rt, "add", map[string]int{"a": 1, "b": 2})).To(HaveField("JSON", BeEquivalentTo("3")))
	})

	It("has one ErrStopped, whichever layer says it", func() {
		Expect(pyvisor.ErrStopped).To(BeIdenticalTo(bridge.ErrStopped))
		Expect(pyvisor.ErrStopped).To(BeIdenticalTo(actors.ErrStopped))
		Expect(pyvisor.ErrStopped).To(BeIdenticalTo(supervision.ErrStopped))
		Expect(actors.ErrNoActor).To(MatchError(pyvisor.ErrStopped), "a pool that is gone has stopped")

		rt, err := pyvisor.Start(context.Background(), pool(1))
		Expect(err).NotTo(HaveOccurred())
		Expect(rt.Stop(context.Background())).To(Succeed())
		_, err = execute(rt, "add", map[string]int{"a": 1, "b": 2})
		Expect(err).To(MatchError(pyvisor.ErrStopped))
		_, err = rt.Stats(context.Background())
		Expect(err).To(MatchError(pyvisor.ErrStopped))
		Expect(rt.Resize(context.Background(), "default", 2)).To(MatchError(pyvisor.ErrStopped))
	})

	Describe("ends every failed call with an error the facade exports", func() {
		var rt *pyvisor.Runtime
		BeforeEach(func() {
			rt, _ = start(pool(1, func(p *pyvisor.PoolConfig) {
				p.MaxMessageBytes = 4096
				p.QueueSize = 1
				p.QueueTimeout = 200 * time.Millisecond
			}))
		})

		DescribeTable("matched with errors.Is",
			func(call func(rt *pyvisor.Runtime) error, sentinel error) {
				Expect(call(rt)).To(MatchError(sentinel))
			},
			Entry("ErrUnknownPool", func(rt *pyvisor.Runtime) error {
				_, err := rt.Execute(context.Background(), "nope", "add", nil)
				return err
			}, pyvisor.ErrUnknownPool),
			Entry("ErrUnknownTool", func(rt *pyvisor.Runtime) error {
				_, err := execute(rt, "no_such_tool", nil)
				return err
			}, pyvisor.ErrUnknownTool),
			Entry("ErrInvalidArgument", func(rt *pyvisor.Runtime) error {
				_, err := execute(rt, "add", map[string]string{"a": "x"})
				return err
			}, pyvisor.ErrInvalidArgument),
			Entry("ErrWrongCallKind", func(rt *pyvisor.Runtime) error {
				_, err := execute(rt, "count", map[string]int{"n": 1})
				return err
			}, pyvisor.ErrWrongCallKind),
			Entry("ErrMessageTooLarge", func(rt *pyvisor.Runtime) error {
				_, err := execute(rt, "large", map[string]int{"size": 8192})
				return err
			}, pyvisor.ErrMessageTooLarge),
			Entry("ErrWorkerCrashed", func(rt *pyvisor.Runtime) error {
				_, err := execute(rt, "crash", nil)
				return err
			}, pyvisor.ErrWorkerCrashed),
			Entry("ErrQueueTimeout", func(rt *pyvisor.Runtime) error {
				go func() { _, _ = execute(rt, "sleep", map[string]float64{"seconds": 0.6}) }()
				Eventually(inFlight).WithArguments(rt).Should(Equal(1))
				_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
				return err
			}, pyvisor.ErrQueueTimeout),
			Entry("ErrPoolSaturated", func(rt *pyvisor.Runtime) error {
				go func() { _, _ = execute(rt, "sleep", map[string]float64{"seconds": 0.6}) }()
				Eventually(inFlight).WithArguments(rt).Should(Equal(1))
				go func() { _, _ = execute(rt, "add", map[string]int{"a": 1, "b": 1}) }() // takes the one queue place
				Eventually(func() int { return stats(rt).Queued }).Should(Equal(1))
				_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
				return err
			}, pyvisor.ErrPoolSaturated),
			Entry("ErrDecode", func(rt *pyvisor.Runtime) error {
				_, err := pyvisor.Call[int](context.Background(), rt, "default", "echo", map[string]string{"value": "three"})
				return err
			}, pyvisor.ErrDecode),
		)

		It("and *ToolError, *CallError, with errors.As", func() {
			_, err := execute(rt, "raise", map[string]string{"message": "boom"})
			var te *pyvisor.ToolError
			Expect(errors.As(err, &te)).To(BeTrue())
			_, err = execute(rt, "no_such_tool", nil)
			var ce *pyvisor.CallError
			Expect(errors.As(err, &ce)).To(BeTrue())
		})
	})

	DescribeTable("ends a failed Start with an error the facade exports, inside a *StartError",
		func(python func() string, tweak func(*pyvisor.PoolConfig), sentinel error) {
			cfg := pool(1, tweak)
			cfg.Python = python()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := pyvisor.Start(ctx, cfg)
			Expect(err).To(MatchError(sentinel))
			var se *pyvisor.StartError
			Expect(errors.As(err, &se)).To(BeTrue(), "got %v", err)
			Expect(se.Hint).NotTo(BeEmpty())
		},
		Entry("ErrInterpreterNotFound", func() string { return "/nonexistent/python3" }, func(*pyvisor.PoolConfig) {}, pyvisor.ErrInterpreterNotFound),
		Entry("ErrExitedBeforeHandshake", func() string { return script("exit 0") }, func(*pyvisor.PoolConfig) {}, pyvisor.ErrExitedBeforeHandshake),
		Entry("ErrHandshake", func() string { return script(`echo "Welcome to the cluster shell"; sleep 5`) }, func(*pyvisor.PoolConfig) {}, pyvisor.ErrHandshake),
		Entry("ErrHandshakeTimeout", func() string { return script("sleep 5") }, func(p *pyvisor.PoolConfig) { p.HandshakeTimeout = 300 * time.Millisecond }, pyvisor.ErrHandshakeTimeout),
	)

	It("ends a Start with a bad config with ErrInvalidConfig", func() {
		_, err := pyvisor.Start(context.Background(), pyvisor.Config{Pools: []pyvisor.PoolConfig{{Name: "", Tools: nil}}})
		Expect(err).To(MatchError(pyvisor.ErrInvalidConfig))
	})
})
