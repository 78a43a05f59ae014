package runtime_test

import (
	"context"
	"regexp"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("A pool with a memory limit", Label("python"), func() {
	DescribeTable("kills a worker whose memory runs away during a call, fails the call with ErrMemoryLimit, and serves again",
		func(mbPerStep, stepMS int) {
			rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
				p.Tools = []string{"memory_tools"}
				p.Dir = modelTools
				p.MemoryLimit = 500 << 20
			}))
			pid := stats(rt).Workers[0].PID
			Expect(stats(rt).MemoryEnforcement).To(Equal("sampler"))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			began := time.Now()
			_, err := pyvisor.Call[int](ctx, rt, "default", "grow", map[string]int{"mb_per_step": mbPerStep, "step_ms": stepMS, "steps": 40})
			took := time.Since(began)
			Expect(err).To(MatchError(pyvisor.ErrMemoryLimit))
			Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed), "a kind of crash")
			m := regexp.MustCompile(`resident memory (\d+) MiB passed`).FindStringSubmatch(err.Error())
			Expect(m).NotTo(BeNil(), err.Error())
			rss, _ := strconv.Atoi(m[1])
			Expect(rss).To(BeNumerically("<", 750), "stopped before 750 MiB")
			AddReportEntry("memory runaway", map[string]any{"MB per step": mbPerStep, "step ms": stepMS, "RSS at the kill (MiB)": rss, "call took": took.String()})

			Eventually(func() int { return stats(rt).Restarts["memory_limit"] }).Should(Equal(1))
			Eventually(func() int { return stats(rt).Workers[0].PID }).WithTimeout(20 * time.Second).
				Should(And(Not(BeZero()), Not(Equal(pid))))
			Expect(pyvisor.Call[string](ctx, rt, "default", "small", nil)).To(Equal("ok"), "the pool serves again")
		},
		Entry("100 MB every 50 ms", 100, 50),
		Entry("20 MB every 10 ms", 20, 10),
		Entry("400 MB at once, then more", 400, 200),
	)

	It("leaves a worker under the limit alone", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{"memory_tools"}
			p.Dir = modelTools
			p.MemoryLimit = 500 << 20
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		Expect(pyvisor.Call[int](ctx, rt, "default", "grow", map[string]int{"mb_per_step": 50, "step_ms": 20, "steps": 4})).To(Equal(4))
		Expect(stats(rt).Restarts["memory_limit"]).To(BeZero())
	})
})
