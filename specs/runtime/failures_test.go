package runtime_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

var _ = Describe("When a worker's Python process dies", Label("python"), func() {
	It("replaces it after kill -9, the pool returns to full size, and concurrent callers get a result or a typed error", func() {
		rt, _ := start(pool(2))
		before := readyPIDs(rt)
		victim := before["default-0"]

		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for range 40 {
			wg.Go(func() {
				_, err := execute(rt, "sleep", map[string]float64{"seconds": 0.05})
				errs <- err
			})
		}
		Expect(syscall.Kill(victim, syscall.SIGKILL)).To(Succeed())
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed), "a call either succeeds or says its worker crashed")
			}
		}
		Eventually(func() map[string]int { return readyPIDs(rt) }).Should(And(
			HaveLen(2),
			HaveKeyWithValue("default-0", Not(Equal(victim))),
			HaveKeyWithValue("default-1", before["default-1"]),
		))
		Expect(harness.Alive(victim)).To(BeFalse())
		Expect(stats(rt).Restarts).To(HaveKeyWithValue("crash", 1))
	})

	It("fails the call that was running with ErrWorkerCrashed at once", func() {
		rt, _ := start(pool(1))
		_, err := execute(rt, "crash", map[string]any{"after_seconds": 0.1})
		var exit interface{ Is(error) bool }
		Expect(errors.As(err, &exit)).To(BeTrue())
		Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed))
		Eventually(func() int { return len(readyPIDs(rt)) }).Should(Equal(1))
	})

	Context("when the call is marked idempotent", func() {
		// inFlightPID is the Python pid of the one worker running a call.
		inFlightPID := func(rt *pyvisor.Runtime) int {
			for _, w := range stats(rt).Workers {
				if w.InFlight > 0 {
					return w.PID
				}
			}
			return 0
		}

		It("retries it once on another worker, and the caller gets its result", func() {
			rt, _ := start(pool(2))
			done := make(chan error, 1)
			go func() {
				_, err := execute(rt, "sleep", map[string]float64{"seconds": 1}, pyvisor.Idempotent())
				done <- err
			}()
			Eventually(func() int { return inFlightPID(rt) }).ShouldNot(BeZero())
			Expect(syscall.Kill(inFlightPID(rt), syscall.SIGKILL)).To(Succeed())
			Eventually(done).Should(Receive(BeNil()))
			Expect(stats(rt).Restarts).To(HaveKeyWithValue("crash", 1))
		})

		It("does not retry a call that is not marked so", func() {
			rt, _ := start(pool(2))
			done := make(chan error, 1)
			go func() {
				_, err := execute(rt, "sleep", map[string]float64{"seconds": 1})
				done <- err
			}()
			Eventually(func() int { return inFlightPID(rt) }).ShouldNot(BeZero())
			Expect(syscall.Kill(inFlightPID(rt), syscall.SIGKILL)).To(Succeed())
			Eventually(done).Should(Receive(MatchError(pyvisor.ErrWorkerCrashed)))
		})
	})
})

var _ = Describe("A pool whose workers keep crashing", Label("python"), func() {
	It("gives up past its restart intensity and fails every call with ErrPoolFailed", func() {
		rt, logs := start(pool(1, func(p *pyvisor.PoolConfig) {
			p.Restart = pyvisor.RestartConfig{MaxRestarts: 1, Within: time.Minute}
		}))
		for range 2 {
			_, err := execute(rt, "crash", nil)
			Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed))
		}
		Eventually(func() string { return stats(rt).State }).Should(Equal("failed"))
		_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
		Expect(err).To(MatchError(pyvisor.ErrPoolFailed))
		Expect(err.Error()).To(ContainSubstring("restart intensity exceeded"))
		Expect(logs.Matching("pool failed: its workers kept failing")).NotTo(BeEmpty())
	})
})

var _ = Describe("Heartbeats", Label("python"), func() {
	heartbeats := func(p *pyvisor.PoolConfig) {
		p.Heartbeat = pyvisor.HeartbeatConfig{Enabled: true, Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, MaxMissed: 3}
	}

	It("detect a SIGSTOPped worker after about interval x missed, and its supervisor replaces it", func() {
		rt, logs := start(pool(1, heartbeats))
		victim := readyPIDs(rt)["default-0"]
		Eventually(func() uint64 { return stats(rt).Workers[0].HeartbeatPings }).Should(BeNumerically(">=", 2))

		stopped := time.Now()
		Expect(syscall.Kill(victim, syscall.SIGSTOP)).To(Succeed())
		Eventually(func() map[string]int { return stats(rt).Restarts }).Should(HaveKeyWithValue("heartbeat", 1))
		// 3 misses of (200 ms timeout + 200 ms interval) each: well under the bound below.
		Expect(time.Since(stopped)).To(BeNumerically("<", 5*time.Second))
		Eventually(func() int { return readyPIDs(rt)["default-0"] }).ShouldNot(Or(BeZero(), Equal(victim)))
		Expect(harness.Alive(victim)).To(BeFalse(), "the stopped process was killed, not orphaned")
		Expect(logs.Matching("heartbeat gave up on the python worker")).NotTo(BeEmpty())
	})

	It("fail the call running on a worker they give up on with ErrWorkerCrashed", func() {
		rt, _ := start(pool(1, heartbeats))
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := rt.Execute(ctx, "default", "hang", map[string]float64{"seconds": 30})
		Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed))
		Expect(ctx.Err()).To(Succeed(), "it failed when the worker was replaced, not at the deadline")
		Expect(stats(rt).Restarts).To(HaveKeyWithValue("heartbeat", 1))
	})

	It("send no pings when they are off (the default)", func() {
		rt, _ := start(pool(1))
		Consistently(func() uint64 { return stats(rt).Workers[0].HeartbeatPings }, 600*time.Millisecond).Should(BeZero())
	})
})

var _ = Describe("A pool whose workers can never start", Label("python"), func() {
	It("fails Start with a clear error after a bounded number of restarts, when trying again might have helped", func() {
		// A worker that dies at once for a reason that is not deterministic (not a
		// missing module: that fails at once, see "A tools module that cannot import").
		cfg := pool(1)
		cfg.Python = script(`echo "out of file descriptors, say" >&2; exit 1`)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rt, err := pyvisor.Start(ctx, cfg)
		Expect(rt).To(BeNil())
		Expect(err).To(MatchError(pyvisor.ErrPoolFailed))
		Expect(err.Error()).To(ContainSubstring("out of file descriptors"))
		Expect(err.Error()).To(ContainSubstring("restart intensity exceeded"))
	})
})

var _ = Describe("Stopping the runtime", Label("python"), func() {
	It("lets in-flight calls finish, rejects new ones with ErrStopped, and leaves no process behind", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rt, pids, inflight := startWithCallInFlight(ctx, 2, "sleep", map[string]float64{"seconds": 0.5})

		stopped := make(chan error, 1)
		go func() { stopped <- rt.Stop(ctx) }()
		Eventually(func() error {
			_, err := rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 1})
			return err
		}).Should(MatchError(pyvisor.ErrStopped))
		Eventually(inflight).Should(Receive(BeNil()))
		Eventually(stopped).Should(Receive(BeNil()))
		expectGone(pids)
	})

	It("returns soon after its context ends even while a worker will not stop: that worker's call fails with ErrStopped, and no process is left", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// A worker that wedges its event loop answers neither Shutdown nor SIGTERM:
		// left to itself, it would be killed only after its 5 s stop timeout.
		rt, pids, hung := startWithCallInFlight(ctx, 1, "hang", map[string]float64{"seconds": 60})

		stopCtx, stopCancel := context.WithTimeout(ctx, time.Second)
		defer stopCancel()
		began := time.Now()
		err := rt.Stop(stopCtx)
		took := time.Since(began)

		Expect(err).To(MatchError(context.DeadlineExceeded))
		Expect(took).To(BeNumerically("<", 3*time.Second), "Stop ran %v past a 1 s deadline", took-time.Second)
		Eventually(hung).Should(Receive(MatchError(pyvisor.ErrStopped)))
		expectGone(pids)
	})
})

var _ = Describe("Stop", Label("python"), func() {
	It("may be called again, and from several goroutines at once", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rt, err := pyvisor.Start(ctx, pool(1))
		Expect(err).NotTo(HaveOccurred())
		pids := readyPIDs(rt)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				defer GinkgoRecover()
				errs <- rt.Stop(ctx)
			}()
		}
		for range 3 {
			Eventually(errs).Should(Receive(BeNil()))
		}
		Expect(rt.Stop(ctx)).To(Succeed())
		expectGone(pids)
	})

	It("leaves no process behind when it comes while workers are still starting", func() {
		// One process starts at a time and Start's deadline ends before the fourth:
		// Start stops the runtime itself, with starts under way and still to come.
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		_, err := pyvisor.Start(ctx, pool(4, func(p *pyvisor.PoolConfig) { p.StartupBatch = 1 }))
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Expect(harness.ChildProcesses()).To(BeEmpty())
		Consistently(harness.ChildProcesses, time.Second).Should(BeEmpty(), "a worker started after Start gave up")
	})
})

// startWithCallInFlight starts a runtime of workers that the spec stops itself, and one
// call of tool running on it. It returns the runtime, its Python processes' pids, and
// where the call's error arrives.
func startWithCallInFlight(ctx context.Context, workers int, tool string, args any) (*pyvisor.Runtime, map[string]int, <-chan error) {
	GinkgoHelper()
	rt, err := pyvisor.Start(ctx, pool(workers))
	Expect(err).NotTo(HaveOccurred())
	pids := readyPIDs(rt)
	done := make(chan error, 1)
	go func() {
		_, err := rt.Execute(ctx, "default", tool, args)
		done <- err
	}()
	Eventually(func() int { return inFlight(rt) }).Should(Equal(1))
	return rt, pids, done
}

// expectGone checks that none of pids is alive.
func expectGone(pids map[string]int) {
	GinkgoHelper()
	for slot, pid := range pids {
		Expect(harness.Alive(pid)).To(BeFalse(), "the Python process of %s (pid %d) is still alive", slot, pid)
	}
}

var _ = Describe("Stopping the runtime's workers", Label("python"), func() {
	It("stops them one by one, in reverse start order", func() {
		logs := &harness.Logs{}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rt, err := pyvisor.Start(ctx, pool(3), pyvisor.WithLogger(zerolog.New(logs)))
		Expect(err).NotTo(HaveOccurred())
		Expect(rt.Stop(ctx)).To(Succeed())
		var order []any
		for _, line := range logs.Matching("shutdown requested") {
			order = append(order, line["worker"])
		}
		Expect(order).To(Equal([]any{"default-2", "default-1", "default-0"}))
	})
})

var _ = Describe("Many crashes", Label("python", "slow"), func() {
	It("leave goroutine and file-descriptor counts where they started after 200 crash-and-restart cycles", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
			p.Restart.MaxRestarts = 1000 // this spec is about leaks, not intensity
			p.Restart.Within = time.Second
		}))
		Expect(whoami(rt)).NotTo(BeZero())
		// Counts, not identities: each cycle's new process brings its own goroutines
		// (reaper, stderr reader, gRPC connection) in place of the old one's.
		goroutines, fds := len(gleak.Goroutines()), openFDs()
		for i := range 200 {
			before := readyPIDs(rt)["default-0"]
			_, err := execute(rt, "crash", nil)
			Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed), "cycle %d", i)
			Eventually(func() int { return readyPIDs(rt)["default-0"] }).ShouldNot(Or(BeZero(), Equal(before)), "cycle %d", i)
		}
		Expect(whoami(rt)).NotTo(BeZero())
		Eventually(func() int { return len(gleak.Goroutines()) }).Should(BeNumerically("<=", goroutines+2))
		Eventually(openFDs).Should(BeNumerically("<=", fds+2))
	})
})

func openFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

var _ = Describe("A stopped runtime", Label("python"), func() {
	It("answers every later call at once with ErrStopped, Execute and Stream alike", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rt, err := pyvisor.Start(ctx, pool(1))
		Expect(err).NotTo(HaveOccurred())
		Expect(rt.Stop(ctx)).To(Succeed())

		_, err = rt.Execute(context.Background(), "default", "add", map[string]int{"a": 1, "b": 1})
		Expect(err).To(MatchError(pyvisor.ErrStopped))
		done := make(chan error, 1)
		go func() {
			for _, err := range rt.Stream(context.Background(), "default", "count", map[string]int{"n": 2}) {
				done <- err
				return
			}
			done <- nil
		}()
		Eventually(done).WithTimeout(5 * time.Second).Should(Receive(MatchError(pyvisor.ErrStopped)))
	})
})
