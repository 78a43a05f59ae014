package runtime_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("A worker pool", Label("python"), func() {
	It("starts its workers concurrently and all of them serve", func() {
		rt, _ := start(pool(4))
		st := stats(rt)
		Expect(st.State).To(Equal("running"))
		Expect(st.Workers).To(HaveLen(4))
		pids := map[int]bool{}
		for _, w := range st.Workers {
			Expect(w.State).To(Equal("ready"))
			Expect(w.Address).To(BeAnExistingFile(), "Stats tells where each worker serves")
			pids[w.PID] = true
		}
		Expect(pids).To(HaveLen(4))
	})

	It("spreads concurrent calls over its workers", func() {
		rt, _ := start(pool(3))
		var mu sync.Mutex
		seen := map[string]bool{}
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				defer GinkgoRecover()
				res, err := execute(rt, "sleep", map[string]float64{"seconds": 0.3})
				Expect(err).NotTo(HaveOccurred())
				_ = res
			})
		}
		Eventually(func() int {
			for _, w := range stats(rt).Workers {
				if w.InFlight > 0 {
					mu.Lock()
					seen[w.ID] = true
					mu.Unlock()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			return len(seen)
		}).Should(Equal(3))
		wg.Wait()
		Expect(stats(rt).Completed).To(BeNumerically("==", 6))
	})

	It("runs up to MaxConcurrent calls at once on one worker's channel, each answer going to its own caller", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.MaxConcurrent = 32 }))
		const callers = 32
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				defer GinkgoRecover()
				seconds := 0.2 + float64(i)/1000 // each caller's own answer
				res, err := execute(rt, "sleep", map[string]float64{"seconds": seconds})
				Expect(err).NotTo(HaveOccurred())
				var got float64
				Expect(res.Decode(&got)).To(Succeed())
				Expect(got).To(BeNumerically("~", seconds, 1e-9))
			})
		}
		Eventually(inFlight).WithArguments(rt).Should(Equal(callers), "all of them in flight on the one worker")
		wg.Wait()
		Expect(stats(rt).Completed).To(BeNumerically("==", callers))
	})

	Context("when every worker is busy", func() {
		It("queues calls in order and runs them as workers free up", func() {
			rt, _ := start(pool(1))
			results := make(chan int, 3)
			for i := range 3 {
				go func() {
					defer GinkgoRecover()
					res, err := execute(rt, "sleep", map[string]float64{"seconds": 0.2})
					Expect(err).NotTo(HaveOccurred())
					_ = res
					results <- i
				}()
				Eventually(func() int { st := stats(rt); return st.Queued + st.Workers[0].InFlight }).Should(Equal(i + 1))
			}
			Eventually(results).Should(HaveLen(3))
			Expect([]int{<-results, <-results, <-results}).To(Equal([]int{0, 1, 2}))
		})

		It("rejects a call with ErrPoolSaturated once the queue is full", func() {
			rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.QueueSize = 1 }))
			go func() { _, _ = execute(rt, "sleep", map[string]float64{"seconds": 1}) }()
			go func() { _, _ = execute(rt, "sleep", map[string]float64{"seconds": 0.1}) }()
			Eventually(func() int { return stats(rt).Queued }).Should(Equal(1))
			_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
			Expect(err).To(MatchError(pyvisor.ErrPoolSaturated))
			Expect(stats(rt).Rejected).To(HaveKeyWithValue("queue_full", 1))
		})

		It("fails a call that waited longer than the queue timeout with ErrQueueTimeout", func() {
			rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.QueueTimeout = 200 * time.Millisecond }))
			go func() { _, _ = execute(rt, "sleep", map[string]float64{"seconds": 1.5}) }()
			Eventually(func() int { return stats(rt).Workers[0].InFlight }).Should(Equal(1))
			_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
			Expect(err).To(MatchError(pyvisor.ErrQueueTimeout))
			Expect(stats(rt).Rejected).To(HaveKeyWithValue("queue_timeout", 1))
		})

		It("lets a caller's deadline end a queued call", func() {
			rt, _ := start(pool(1))
			go func() { _, _ = execute(rt, "sleep", map[string]float64{"seconds": 1}) }()
			Eventually(func() int { return stats(rt).Workers[0].InFlight }).Should(Equal(1))
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, err := rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 1})
			Expect(err).To(MatchError(context.DeadlineExceeded))
		})
	})

	Context("when a caller stops reading a stream", func() {
		It("frees the worker once the stream's context ends, while the caller still holds a chunk", func() {
			rt, _ := start(pool(1))
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			busy, resume, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
			go func() {
				defer GinkgoRecover()
				defer close(done)
				for _, err := range rt.Stream(ctx, "default", "count", map[string]any{"n": 1000, "interval": 0.01}) {
					Expect(err).NotTo(HaveOccurred())
					close(busy)
					<-resume // the caller is busy with its first chunk well past the deadline
					return
				}
			}()
			Eventually(busy).Should(BeClosed())
			callCtx, callCancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer callCancel()
			res, err := rt.Execute(callCtx, "default", "add", map[string]int{"a": 2, "b": 3})
			Expect(err).NotTo(HaveOccurred(), "the only worker serves again after the stream's deadline")
			var sum int
			Expect(res.Decode(&sum)).To(Succeed())
			Expect(sum).To(Equal(5))
			close(resume)
			Eventually(done).Should(BeClosed())
		})
	})

	Context("with sessions", func() {
		It("sends every call of a session to the worker holding it (hint mode)", func() {
			rt, _ := start(pool(3))
			_, err := execute(rt, "session_set", map[string]any{"key": "k", "value": 7}, pyvisor.WithSession("s-1"))
			Expect(err).NotTo(HaveOccurred())
			first := whoami(rt, pyvisor.WithSession("s-1"))
			for range 5 {
				Expect(whoami(rt, pyvisor.WithSession("s-1"))).To(Equal(first))
			}
			res, err := execute(rt, "session_get", map[string]any{"key": "k"}, pyvisor.WithSession("s-1"))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(res.JSON)).To(Equal("7"))
		})

		It("keeps a session on its worker across a stream and the call right after it", func() {
			rt, _ := start(pool(2))
			owner := whoami(rt, pyvisor.WithSession("s-4"))
			for range 5 {
				for _, err := range rt.Stream(context.Background(), "default", "count", map[string]int{"n": 2}, pyvisor.WithSession("s-4")) {
					Expect(err).NotTo(HaveOccurred())
				}
				Expect(whoami(rt, pyvisor.WithSession("s-4"))).To(Equal(owner))
			}
		})

		It("falls back to another worker in hint mode when the session's worker is busy", func() {
			rt, _ := start(pool(2))
			owner := whoami(rt, pyvisor.WithSession("s-2"))
			go func() { _, _ = execute(rt, "sleep", map[string]float64{"seconds": 1}, pyvisor.WithSession("s-2")) }()
			Eventually(func() int { return inFlight(rt) }).Should(Equal(1))
			Expect(whoami(rt, pyvisor.WithSession("s-2"))).NotTo(Equal(owner))
		})

		It("waits for the session's worker in strict mode", func() {
			rt, _ := start(pool(2, func(p *pyvisor.PoolConfig) { p.Affinity = pyvisor.AffinityStrict }))
			owner := whoami(rt, pyvisor.WithSession("s-3"))
			go func() { _, _ = execute(rt, "sleep", map[string]float64{"seconds": 0.5}, pyvisor.WithSession("s-3")) }()
			Eventually(func() int { return inFlight(rt) }).Should(Equal(1))
			Expect(whoami(rt, pyvisor.WithSession("s-3"))).To(Equal(owner))
			// Calls without a session are not held up behind it.
			Expect(whoami(rt)).NotTo(Equal(owner))
		})
	})

	It("recycles a worker after a number of calls", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.Recycle.MaxCalls = 3 }))
		first := whoami(rt)
		Expect(whoami(rt)).To(Equal(first))
		Expect(whoami(rt)).To(Equal(first))
		Expect(whoami(rt)).NotTo(Equal(first), "the fourth call runs in a fresh process")
		Expect(stats(rt).Recycled).To(HaveKeyWithValue("max_calls", 1))
		Expect(stats(rt).Restarts).To(BeEmpty(), "a recycle is not a failure")
	})

	It("recycles a worker that has lived past its maximum age", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.Recycle.MaxAge = 500 * time.Millisecond }))
		first := whoami(rt)
		Eventually(func() int { return readyPIDs(rt)["default-0"] }).ShouldNot(Or(Equal(first), BeZero()))
		Expect(stats(rt).Recycled).To(HaveKey("max_age"))
	})

	It("recycles a worker whose Python process uses more memory than allowed", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.Recycle.MaxRSSBytes = 1 << 20 }))
		first := whoami(rt)
		Eventually(func() int { return readyPIDs(rt)["default-0"] }).ShouldNot(Or(Equal(first), BeZero()))
		Expect(stats(rt).Recycled).To(HaveKey("max_memory"))
	})

	It("resizes up and down at runtime", func() {
		rt, _ := start(pool(1))
		Expect(rt.Resize(context.Background(), "default", 3)).To(Succeed())
		Eventually(func() int { return len(readyPIDs(rt)) }).Should(Equal(3))
		Expect(rt.Resize(context.Background(), "default", 1)).To(Succeed())
		Eventually(func() []string {
			var ids []string
			for _, w := range stats(rt).Workers {
				ids = append(ids, w.ID)
			}
			return ids
		}).Should(Equal([]string{"default-0"}))
		Expect(whoami(rt)).To(Equal(readyPIDs(rt)["default-0"]))

		Expect(rt.Resize(context.Background(), "default", 2)).To(Succeed())
		Eventually(func() map[string]int { return readyPIDs(rt) }).Should(HaveKey("default-1"), "a freed slot id is used again")
	})
})
