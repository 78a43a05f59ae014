package runtime_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("A call whose caller gives up", Label("python"), func() {
	It("returns at its deadline, and keeps its worker's slot until the Python body is really over", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.CancelGrace = 10 * time.Second }))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		began := time.Now()
		_, err := rt.Execute(ctx, "default", "ignore_cancel_sync", map[string]float64{"seconds": 1})
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Expect(time.Since(began)).To(BeNumerically("<", 900*time.Millisecond), "the caller did not wait for the body")
		Expect(inFlight(rt)).To(Equal(1), "MaxConcurrent bounds bodies: the thread still runs the tool")
		res, err := execute(rt, "add", map[string]int{"a": 1, "b": 2}) // queued until the body is over
		Expect(err).NotTo(HaveOccurred())
		Expect(res.JSON).To(BeEquivalentTo("3"))
		Expect(stats(rt).Restarts).To(BeEmpty(), "a body over within its grace is no failure")
	})

	DescribeTable("replaces the worker when the cancelled body outlives the cancel grace, with restart reason stuck_body",
		func(tool string) {
			rt, logs := start(pool(1, func(p *pyvisor.PoolConfig) { p.CancelGrace = 300 * time.Millisecond }))
			before := readyPIDs(rt)["default-0"]
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := rt.Execute(ctx, "default", tool, map[string]float64{"seconds": 30})
			Expect(err).To(MatchError(context.DeadlineExceeded))
			Eventually(func() map[string]int { return stats(rt).Restarts }).Should(HaveKeyWithValue("stuck_body", 1))
			Eventually(readyPIDs).WithArguments(rt).Should(HaveKeyWithValue("default-0", Not(Equal(before))))
			Expect(logs.Matching("a cancelled call's python body is still running past its grace; replacing the worker")).
				To(ContainElement(HaveKeyWithValue("tool", tool)))
			Expect(execute(rt, "add", map[string]int{"a": 1, "b": 2})).To(HaveField("JSON", BeEquivalentTo("3")))
		},
		Entry("a sync tool that never looks at ctx.cancelled", "ignore_cancel_sync"),
		Entry("an async tool that swallows CancelledError", "swallow_cancel"),
		Entry("an async tool that wedges the event loop", "hang"),
	)
})

var _ = Describe("A worker whose threads are all held by bodies that ignore cancellation", Label("python"), func() {
	It("is replaced once the bodies outlive their grace, and serves again; meanwhile no call is sent to it", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
			p.MaxConcurrent = 40 // more than the worker's 32 threads
			p.CancelGrace = 500 * time.Millisecond
		}))
		before := readyPIDs(rt)["default-0"]
		var wg sync.WaitGroup
		for range 40 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				_, err := rt.Execute(ctx, "default", "ignore_cancel_sync", map[string]float64{"seconds": 30})
				Expect(err).To(MatchError(context.DeadlineExceeded))
			})
		}
		wg.Wait()
		Expect(inFlight(rt)).To(BeNumerically(">=", 32), "the bodies hold their slots past their callers")
		Eventually(func() map[string]int { return stats(rt).Restarts }).Should(HaveKeyWithValue("stuck_body", 1))
		Eventually(readyPIDs).WithArguments(rt).Should(HaveKeyWithValue("default-0", Not(Equal(before))))
		Expect(execute(rt, "add", map[string]int{"a": 1, "b": 2})).To(HaveField("JSON", BeEquivalentTo("3")))
	})
})
