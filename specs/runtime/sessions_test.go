package runtime_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("A pool's sessions", Label("python"), func() {
	count := func(rt *pyvisor.Runtime, session string) int {
		GinkgoHelper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		t, err := pyvisor.Call[struct {
			Count int `json:"count"`
		}](ctx, rt, "default", "tally", nil, pyvisor.WithSession(session))
		Expect(err).NotTo(HaveOccurred())
		return t.Count
	}
	open := func(rt *pyvisor.Runtime) func() int { return func() int { return stats(rt).Sessions } }

	It("close one idle past sessions.idle_timeout, dropping its state in the worker", func() {
		rt, _ := start(upgradePool(toolsDir(), 1, func(p *pyvisor.PoolConfig) { p.Sessions.IdleTimeout = 300 * time.Millisecond }))
		Expect(count(rt, "s1")).To(Equal(1))
		Expect(count(rt, "s1")).To(Equal(2))
		Expect(stats(rt).Sessions).To(Equal(1))
		Eventually(open(rt)).WithTimeout(5 * time.Second).Should(BeZero())
		Expect(count(rt, "s1")).To(Equal(1), "a later call starts a new session")
	})

	It("close the least recently used past sessions.max", func() {
		rt, _ := start(upgradePool(toolsDir(), 1, func(p *pyvisor.PoolConfig) { p.Sessions.Max = 2 }))
		Expect(count(rt, "s1")).To(Equal(1))
		Expect(count(rt, "s2")).To(Equal(1))
		Expect(count(rt, "s1")).To(Equal(2)) // s2 is now the least recently used
		Expect(count(rt, "s3")).To(Equal(1))
		Expect(stats(rt).Sessions).To(Equal(2))
		Expect(count(rt, "s1")).To(Equal(3), "kept")
		Expect(count(rt, "s2")).To(Equal(1), "closed, and started afresh")
	})

	It("stay bounded under a stream of distinct session ids", func() {
		rt, _ := start(upgradePool(toolsDir(), 2, func(p *pyvisor.PoolConfig) { p.Sessions.IdleTimeout = 200 * time.Millisecond }))
		for i := range 2000 {
			Expect(count(rt, fmt.Sprintf("churn-%d", i))).To(Equal(1))
		}
		Eventually(open(rt)).WithTimeout(10 * time.Second).Should(BeZero())
	})

	It("end with CloseSession, which says when the pool holds no such session", func() {
		rt, _ := start(upgradePool(toolsDir(), 1))
		Expect(count(rt, "s1")).To(Equal(1))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		Expect(rt.CloseSession(ctx, "default", "s1")).To(Succeed())
		Expect(stats(rt).Sessions).To(BeZero())
		Expect(count(rt, "s1")).To(Equal(1))
		Expect(rt.CloseSession(ctx, "default", "nope")).To(MatchError(pyvisor.ErrUnknownSession))
	})
})
