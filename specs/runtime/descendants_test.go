package runtime_test

import (
	"context"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

var _ = Describe("Processes a tool starts", Label("python"), func() {
	// spawn runs spawn_children: a child, a child in its own session, and an orphaned
	// grandchild (re-parented to the worker, its subreaper), all sleeping.
	spawn := func(rt *pyvisor.Runtime) []int {
		GinkgoHelper()
		res, err := execute(rt, "spawn_children", nil)
		Expect(err).NotTo(HaveOccurred())
		var pids map[string]int
		Expect(res.Decode(&pids)).To(Succeed())
		Expect(pids).To(HaveLen(3))
		out := []int{pids["child"], pids["session"], pids["orphan"]}
		for _, pid := range out {
			Expect(harness.Alive(pid)).To(BeTrue())
		}
		return out
	}
	allGone := func(pids []int) func() []int {
		return func() []int {
			var alive []int
			for _, pid := range pids {
				if harness.Alive(pid) {
					alive = append(alive, pid)
				}
			}
			return alive
		}
	}

	It("die with their worker when the runtime stops, those in a session of their own too", func() {
		rt, _ := start(pool(1))
		pids := spawn(rt)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		Expect(rt.Stop(ctx)).To(Succeed())
		Eventually(allGone(pids)).Should(BeEmpty())
	})

	It("die with their worker when it is recycled", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.Recycle.MaxCalls = 1 }))
		pids := spawn(rt)
		Eventually(func() map[string]int { return readyPIDs(rt) }).ShouldNot(BeEmpty())
		Eventually(allGone(pids)).Should(BeEmpty())
	})

	It("die with their worker when its heartbeat gives up on it", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
			p.Heartbeat = pyvisor.HeartbeatConfig{Enabled: true, Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond, MaxMissed: 2}
		}))
		pids := spawn(rt)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, _ = rt.Execute(ctx, "default", "hang", map[string]float64{"seconds": 30})
		Eventually(func() map[string]int { return stats(rt).Restarts }).Should(HaveKey("heartbeat"))
		Eventually(allGone(pids)).Should(BeEmpty())
	})

	It("die with their worker when a stuck body gets it replaced", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.CancelGrace = 200 * time.Millisecond }))
		pids := spawn(rt)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, _ = rt.Execute(ctx, "default", "ignore_cancel_sync", map[string]float64{"seconds": 30})
		Eventually(func() map[string]int { return stats(rt).Restarts }).Should(HaveKey("stuck_body"))
		Eventually(allGone(pids)).Should(BeEmpty())
	})

	It("die with their worker when it crashes and cannot clean up after itself", func() {
		rt, _ := start(pool(1))
		pids := spawn(rt)
		_, err := execute(rt, "crash", nil) // os._exit: no clean-up in Python at all
		Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed))
		Eventually(allGone(pids)).Should(BeEmpty())
	})

	It("die with their worker when it is killed from outside", func() {
		rt, _ := start(pool(1))
		pids := spawn(rt)
		Expect(syscall.Kill(readyPIDs(rt)["default-0"], syscall.SIGKILL)).To(Succeed())
		Eventually(allGone(pids)).Should(BeEmpty())
	})
})
