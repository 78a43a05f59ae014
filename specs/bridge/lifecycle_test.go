package bridge_test

import (
	"context"
	"errors"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

// margin is what a call may take past its deadline: the error has to travel back.
const margin = 500 * time.Millisecond

var _ = Describe("Deadlines and cancellation", Label("python"), func() {
	It("end a call past its deadline within the deadline plus a small margin, and the worker keeps serving", func() {
		p, logs := worker()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := p.Client().Execute(ctx, bridge.Request{Tool: "sleep", Args: map[string]float64{"seconds": 30}})
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Expect(time.Since(start)).To(BeNumerically("<", 300*time.Millisecond+margin))
		// The deadline reached Python: the coroutine was cancelled, not left running.
		Eventually(func() []map[string]any { return logs.Matching("sleep cancelled") }).ShouldNot(BeEmpty())
		stillServes(p)
	})

	It("tell a synchronous tool, through its context, that its call was cancelled", func() {
		p, _ := worker()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := p.Client().Execute(ctx, bridge.Request{Tool: "wait_sync", Args: map[string]float64{"seconds": 30}})
			done <- err
		}()
		Eventually(func() (int, error) {
			pong, err := p.Client().Heartbeat(context.Background(), 1, "")
			return pong.InFlight, err
		}).Should(Equal(1))
		cancel()
		Eventually(done).Should(Receive(MatchError(context.Canceled)))
		// The thread saw the flag and returned, so nothing is in flight any more.
		Eventually(func() (int, error) {
			pong, err := p.Client().Heartbeat(context.Background(), 2, "")
			return pong.InFlight, err
		}).Should(Equal(0))
	})

	It("stop the Python generator when the Go consumer stops reading a stream", func() {
		p, logs := worker()
		for _, tool := range []string{"count", "count_sync"} {
			read := 0
			for _, err := range p.Client().ExecuteStream(context.Background(), bridge.Request{Tool: tool, Args: map[string]any{"n": 1000, "interval": 0.01}}) {
				Expect(err).NotTo(HaveOccurred())
				read++
				if read == 3 {
					break
				}
			}
			Eventually(func() []map[string]any { return logs.Matching("count stream closed") }).Should(ContainElement(And(
				HaveKeyWithValue("chunks_sent", BeNumerically("<", 1000)),
				HaveKeyWithValue("logger", "pyvisor_worker.examples"),
			)), tool)
		}
		stillServes(p)
	})
})

var _ = Describe("A worker that dies mid-call", Label("python"), func() {
	It("fails the call at once with an *ExitError, never a hang", func() {
		p, _ := worker()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		_, err := p.Client().Execute(ctx, bridge.Request{Tool: "crash", Args: map[string]any{"after_seconds": 0.2, "code": 70}})
		Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second))
		Expect(err).To(MatchError(bridge.ErrWorkerCrashed))
		var exit *bridge.ExitError
		Expect(errors.As(err, &exit)).To(BeTrue())
		Expect(exit.PID).To(Equal(p.PID()))
		Expect(exit.ExitCode).To(Equal(70))

		Eventually(p.Done()).Should(BeClosed())
		Expect(p.Err()).To(MatchError(bridge.ErrWorkerCrashed))
		_, err = call(p, "add", map[string]int{"a": 1, "b": 1})
		Expect(err).To(MatchError(bridge.ErrWorkerCrashed), "later calls fail fast too")
	})

	It("reports a kill -9 from outside with the signal", func() {
		p, _ := worker()
		Expect(syscall.Kill(p.PID(), syscall.SIGKILL)).To(Succeed())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := p.Wait(ctx)
		var exit *bridge.ExitError
		Expect(errors.As(err, &exit)).To(BeTrue())
		Expect(exit.Signal).To(Equal(syscall.SIGKILL))
	})
})

var _ = Describe("Stopping a worker", Label("python"), func() {
	It("lets an in-flight call finish, then leaves no process, group member or socket behind", func() {
		p, _ := worker()
		result := make(chan error, 1)
		go func() {
			_, err := call(p, "sleep", map[string]float64{"seconds": 0.5})
			result <- err
		}()
		Eventually(func() (int, error) {
			pong, err := p.Client().Heartbeat(context.Background(), 1, "")
			return pong.InFlight, err
		}).Should(Equal(1))

		Expect(p.Stop(context.Background())).To(Succeed())
		Expect(result).To(Receive(BeNil()), "the in-flight call finished")
		Expect(harness.Alive(p.PID())).To(BeFalse())
		Expect(harness.GroupAlive(p.PID())).To(BeFalse())
		Expect(p.Address()).NotTo(BeAnExistingFile())
		Expect(p.Err()).To(Succeed(), "a requested stop is not a crash")

		_, err := call(p, "add", map[string]int{"a": 1, "b": 1})
		Expect(err).To(MatchError(bridge.ErrStopped))
		Expect(p.Stop(context.Background())).To(Succeed(), "Stop is idempotent")
	})

	It("kills a worker that ignores shutdown and SIGTERM once the stop timeout has passed", func() {
		p, logs := worker(bridge.WithStopTimeout(time.Second))
		decoded(p, "ignore_sigterm", nil)
		go func() { _, _ = call(p, "hang", map[string]float64{"seconds": 60}) }()
		Eventually(logs.Lines).Should(ContainElement(HaveKeyWithValue("message", "hanging")))

		start := time.Now()
		Expect(p.Stop(context.Background())).To(Succeed())
		Expect(time.Since(start)).To(BeNumerically("<", time.Second+2*margin))
		Expect(harness.Alive(p.PID())).To(BeFalse())
		Expect(logs.Matching("python worker ignored shutdown and SIGTERM; killing its process group")).NotTo(BeEmpty())
	})

	It("kills at once when asked to (OTP's brutal kill)", func() {
		p, _ := worker()
		Expect(p.Kill(context.Background())).To(Succeed())
		Expect(harness.Alive(p.PID())).To(BeFalse())
		Expect(p.Address()).NotTo(BeAnExistingFile())
	})

	It("kills at once even while a graceful stop is waiting on a wedged worker", func() {
		p, logs := worker(bridge.WithStopTimeout(20 * time.Second))
		go func() { _, _ = call(p, "hang", map[string]float64{"seconds": 60}) }()
		Eventually(logs.Lines).Should(ContainElement(HaveKeyWithValue("message", "hanging")))
		stopped := make(chan error, 1)
		go func() { stopped <- p.Stop(context.Background()) }()
		Consistently(stopped, 300*time.Millisecond).ShouldNot(Receive(), "the graceful stop waits on the wedged loop")
		start := time.Now()
		Expect(p.Kill(context.Background())).To(Succeed())
		Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second), "not the 20 s stop timeout")
		Expect(harness.Alive(p.PID())).To(BeFalse())
		Eventually(stopped).Should(Receive(BeNil()))
	})
})
