package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

// chaosSeconds is how long the chaos spec runs: short in CI, longer with
// PYVISOR_CHAOS_SECONDS (go tool task chaos -- 60).
func chaosSeconds() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("PYVISOR_CHAOS_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 3 * time.Second
}

var _ = Describe("Under chaos", Label("python", "slow"), func() {
	It("every call ends with its own result or a typed error by its deadline, and the pool comes back to full size", func() {
		const (
			workers    = 3
			callers    = 8
			deadline   = time.Second
			margin     = 250 * time.Millisecond // scheduling on a small, busy machine
			faultEvery = 250 * time.Millisecond
		)
		fds := openFDs()
		rt, _ := start(pool(workers, func(p *pyvisor.PoolConfig) {
			p.Tools = append(p.Tools, "memory_tools") // a tool whose memory runs away, for the memory faults
			p.Dir = modelTools
			p.MemoryLimit = 300 << 20
			p.Heartbeat = pyvisor.HeartbeatConfig{Enabled: true, Interval: 100 * time.Millisecond, Timeout: 150 * time.Millisecond, MaxMissed: 2, InitialDelay: 100 * time.Millisecond}
			p.Restart = pyvisor.RestartConfig{MaxRestarts: 10_000, Within: time.Second}
			p.CancelGrace = 300 * time.Millisecond
		}))
		duration := chaosSeconds()
		end := time.Now().Add(duration)

		var faults, kills, stops, runaways, memoryKills atomic.Int64
		var runawayCalls sync.WaitGroup
		var lastFault atomic.Int64
		faulter := make(chan struct{})
		go func() {
			defer close(faulter)
			defer GinkgoRecover()
			t := time.NewTicker(faultEvery)
			defer t.Stop()
			for now := range t.C {
				if now.After(end) {
					return
				}
				var pids []int
				for _, w := range stats(rt).Workers {
					if w.State == "ready" && w.PID > 0 {
						pids = append(pids, w.PID)
					}
				}
				if len(pids) == 0 {
					continue
				}
				if rand.IntN(3) == 0 { // a memory runaway: a call whose memory passes the limit
					runaways.Add(1)
					faults.Add(1)
					runawayCalls.Go(func() {
						defer GinkgoRecover()
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						_, err := rt.Execute(ctx, "default", "grow", map[string]int{"mb_per_step": 100, "step_ms": 50, "steps": 40})
						lastFault.Store(time.Now().UnixNano()) // the fault is the kill, when the call ends
						Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed), "a runaway ends with its worker, killed by the limit or by another fault")
						if errors.Is(err, pyvisor.ErrMemoryLimit) {
							memoryKills.Add(1)
						}
					})
					continue
				}
				sig, n := syscall.SIGKILL, &kills
				if rand.IntN(2) == 0 {
					sig, n = syscall.SIGSTOP, &stops
				}
				if syscall.Kill(pids[rand.IntN(len(pids))], sig) == nil {
					n.Add(1)
					faults.Add(1)
					lastFault.Store(time.Now().UnixNano())
				}
			}
		}()

		var mu sync.Mutex
		outcomes := map[string]int{}
		var worstLate time.Duration
		var wg sync.WaitGroup
		var seq atomic.Int64
		for range callers {
			wg.Go(func() {
				defer GinkgoRecover()
				for time.Now().Before(end) {
					value := fmt.Sprintf("call-%d", seq.Add(1))
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					due, _ := ctx.Deadline()
					res, err := rt.Execute(ctx, "default", "echo", map[string]string{"value": value})
					late := time.Since(due)
					cancel()
					outcome := "ok"
					switch {
					case err == nil:
						var got string
						Expect(res.Decode(&got)).To(Succeed())
						Expect(got).To(Equal(value), "each caller gets its own result")
					case errors.Is(err, context.DeadlineExceeded):
						outcome = "deadline_exceeded"
					case errors.Is(err, pyvisor.ErrWorkerCrashed):
						outcome = "worker_crashed"
					case errors.Is(err, pyvisor.ErrQueueTimeout), errors.Is(err, pyvisor.ErrPoolSaturated):
						outcome = "queue"
					default:
						Fail(fmt.Sprintf("an untyped error: %v", err))
					}
					Expect(late).To(BeNumerically("<=", margin), "no call outlives its deadline by more than the margin")
					mu.Lock()
					outcomes[outcome]++
					worstLate = max(worstLate, late)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		<-faulter
		runawayCalls.Wait()

		began := time.Now()
		Eventually(func() int {
			n := 0
			for _, w := range stats(rt).Workers {
				if w.State == "ready" {
					n++
				}
			}
			return n
		}).WithTimeout(5*time.Second).WithPolling(10*time.Millisecond).Should(Equal(workers), "back to full size")
		sinceLastFault := time.Since(time.Unix(0, lastFault.Load()))
		backIn := time.Since(began)
		Expect(execute(rt, "add", map[string]int{"a": 1, "b": 2})).To(HaveField("JSON", BeEquivalentTo("3")))

		calls := 0
		for _, n := range outcomes {
			calls += n
		}
		report := fmt.Sprintf("chaos: %v, %d faults (%d SIGKILL, %d SIGSTOP, %d memory runaways, %d of them stopped by the limit), %d calls %v, worst lateness past a deadline %v, full size %v after the callers stopped (%v after the last fault), restarts %v",
			duration, faults.Load(), kills.Load(), stops.Load(), runaways.Load(), memoryKills.Load(), calls, outcomes, worstLate.Round(time.Millisecond),
			backIn.Round(time.Millisecond), sinceLastFault.Round(time.Millisecond), stats(rt).Restarts)
		AddReportEntry("chaos", report)
		GinkgoWriter.Println(report)
		Expect(faults.Load()).To(BeNumerically(">", 0))
		Expect(outcomes["ok"]).To(BeNumerically(">", 0))
		Expect(sinceLastFault).To(BeNumerically("<", time.Second+faultEvery), "back to full size within a second of the last fault")

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		Expect(rt.Stop(ctx)).To(Succeed())
		Eventually(openFDs).Should(BeNumerically("<=", fds+2), "file descriptors back to their count (as the stop spec allows, +2 for the runtime's idle pollers)")
	})
})
