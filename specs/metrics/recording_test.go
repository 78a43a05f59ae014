package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("Heartbeat metrics", Label("python"), func() {
	worker := L{"pool": poolName, "worker": "default-0"}

	It("count pings and answered pongs, and record their latency", func() {
		rt := start(pool(1, heartbeats))
		Eventually(value(rt, "pyvisor_heartbeat_pongs_total", worker)).Should(BeNumerically(">=", 2))
		first := mustScrape(rt)
		pings := first.Value("pyvisor_heartbeat_pings_total", worker)
		pongs := first.Value("pyvisor_heartbeat_pongs_total", worker)
		Expect(pings).To(BeNumerically(">=", pongs), "a pong answers a ping")
		Expect(pings-pongs).To(BeNumerically("<=", 1), "at most the ping in flight is unanswered")

		Eventually(value(rt, "pyvisor_heartbeat_pings_total", worker)).Should(BeNumerically(">", pings))
		Eventually(value(rt, "pyvisor_heartbeat_pongs_total", worker)).Should(BeNumerically(">", pongs))
		now := mustScrape(rt)
		Expect(now.Value("pyvisor_heartbeat_latency_seconds", worker)).To(BeNumerically(">=", now.Value("pyvisor_heartbeat_pongs_total", worker)-1),
			"every pong's round trip is in the latency histogram")
		Expect(now.Value("pyvisor_heartbeat_failures_total", L{"pool": poolName})).To(BeZero())
	})

	Context("when a worker is SIGSTOPped", func() {
		It("count failures and consecutive misses, then a worker restart with reason heartbeat", func() {
			rt := start(pool(1, heartbeats))
			Eventually(value(rt, "pyvisor_heartbeat_pongs_total", worker)).Should(BeNumerically(">=", 1))
			victim := workerPID(rt)
			Expect(victim).NotTo(BeZero())

			Expect(syscall.Kill(victim, syscall.SIGSTOP)).To(Succeed())
			Eventually(value(rt, "pyvisor_heartbeat_consecutive_misses", worker)).Should(BeNumerically(">=", 1))
			Eventually(value(rt, "pyvisor_worker_restarts_total", L{"pool": poolName, "worker": "default-0", "reason": "heartbeat"})).Should(Equal(1.0))

			fams := mustScrape(rt)
			Expect(fams.Value("pyvisor_heartbeat_failures_total", L{"pool": poolName, "worker": "default-0", "reason": "timeout"})).To(BeNumerically(">=", 3),
				"max_missed pings timed out")
			Expect(fams.Value("pyvisor_worker_exits_total", L{"pool": poolName, "reason": "heartbeat"})).To(Equal(1.0))
			Expect(fams.Value("pyvisor_worker_restarts_total", L{"pool": poolName, "reason": "crash"})).To(BeZero())
			// The supervisor reports the restart once the replacement has been started,
			// a moment after the failure.
			Eventually(value(rt, "pyvisor_supervisor_restarts_total", L{"pool": poolName})).Should(Equal(1.0))
			Eventually(value(rt, "pyvisor_worker_starts_total", L{"pool": poolName, "outcome": "ok"})).Should(Equal(2.0))
			Eventually(value(rt, "pyvisor_workers", L{"pool": poolName, "state": "ready"})).Should(Equal(1.0))
			Eventually(value(rt, "pyvisor_heartbeat_pongs_total", worker)).Should(BeNumerically(">", fams.Value("pyvisor_heartbeat_pongs_total", worker)),
				"the replacement answers")
		})

		// The gauge is "misses in a row now": once the replacement answers, it is 0 again.
		It("report no consecutive misses once the replacement answers", func() {
			rt := start(pool(1, heartbeats))
			Eventually(value(rt, "pyvisor_heartbeat_pongs_total", worker)).Should(BeNumerically(">=", 1))
			Expect(syscall.Kill(workerPID(rt), syscall.SIGSTOP)).To(Succeed())
			Eventually(value(rt, "pyvisor_worker_restarts_total", L{"pool": poolName, "reason": "heartbeat"})).Should(Equal(1.0))
			pongs := mustScrape(rt).Value("pyvisor_heartbeat_pongs_total", worker)
			Eventually(value(rt, "pyvisor_heartbeat_pongs_total", worker)).Should(BeNumerically(">", pongs))
			Eventually(value(rt, "pyvisor_heartbeat_consecutive_misses", worker)).WithTimeout(2 * time.Second).Should(BeZero())
		})
	})
})

var _ = Describe("Worker lifecycle metrics", Label("python"), func() {
	Context("when a worker's Python process is killed with kill -9", func() {
		It("count an exit and a restart with reason crash, and a new start", func() {
			rt := start(pool(2))
			Expect(value(rt, "pyvisor_worker_starts_total", L{"pool": poolName, "outcome": "ok"})()).To(Equal(2.0))
			victim := workerPID(rt)
			Expect(victim).NotTo(BeZero())

			Expect(syscall.Kill(victim, syscall.SIGKILL)).To(Succeed())
			Eventually(value(rt, "pyvisor_worker_restarts_total", L{"pool": poolName, "reason": "crash"})).Should(Equal(1.0))
			Eventually(value(rt, "pyvisor_worker_starts_total", L{"pool": poolName, "outcome": "ok"})).Should(Equal(3.0))
			Eventually(value(rt, "pyvisor_workers", L{"pool": poolName, "state": "ready"})).Should(Equal(2.0))

			fams := mustScrape(rt)
			Expect(fams.Value("pyvisor_worker_exits_total", L{"pool": poolName, "reason": "crash"})).To(Equal(1.0))
			Expect(fams.Value("pyvisor_worker_exits_total", L{"pool": poolName, "reason": "heartbeat"})).To(BeZero())
			Expect(fams.Value("pyvisor_supervisor_restarts_total", L{"pool": poolName})).To(Equal(1.0))
			Expect(fams.Value("pyvisor_supervisor_escalations_total", L{"pool": poolName})).To(BeZero())
			Expect(fams.Value("pyvisor_worker_startup_duration_seconds", L{"pool": poolName})).To(Equal(3.0))
			Expect(fams.Value("pyvisor_workers", L{"pool": poolName, "state": "down"})).To(BeZero())
		})
	})

	Context("when the workers keep crashing past the restart intensity", func() {
		failing := func() *pyvisor.Runtime {
			GinkgoHelper()
			rt := start(pool(1, func(p *pyvisor.PoolConfig) {
				p.Restart = pyvisor.RestartConfig{MaxRestarts: 1, Within: time.Minute}
			}))
			for range 2 {
				_, err := execute(rt, "crash", nil)
				Expect(err).To(MatchError(pyvisor.ErrWorkerCrashed))
			}
			Eventually(value(rt, "pyvisor_supervisor_escalations_total", L{"pool": poolName})).Should(Equal(1.0))
			return rt
		}

		It("count the supervisor's escalation", func() {
			rt := failing()
			fams := mustScrape(rt)
			Expect(fams.Value("pyvisor_calls_total", L{"pool": poolName, "tool": "crash", "outcome": "worker_crashed"})).To(Equal(2.0))
			Expect(fams.Value("pyvisor_worker_restarts_total", L{"pool": poolName, "reason": "crash"})).To(BeNumerically(">=", 1))
		})

		// The pool's error wraps its last worker's failure too: the outcome is still
		// pool_failed.
		It("count the calls a failed pool refuses with outcome pool_failed", func() {
			rt := failing()
			_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
			Expect(err).To(MatchError(pyvisor.ErrPoolFailed))
			fams := mustScrape(rt)
			Expect(fams.Value("pyvisor_calls_total", L{"pool": poolName, "tool": "add", "outcome": "pool_failed"})).To(Equal(1.0))
			Expect(fams.Value("pyvisor_calls_total", L{"pool": poolName, "tool": "add", "outcome": "worker_crashed"})).To(BeZero())
		})
	})
})

var _ = Describe("Call metrics", Label("python"), func() {
	It("count calls by tool and outcome, and the duration histogram counts each call once", func() {
		rt := start(pool(1))
		for range 3 {
			_, err := execute(rt, "add", map[string]int{"a": 1, "b": 2})
			Expect(err).NotTo(HaveOccurred())
		}
		for range 2 {
			_, err := execute(rt, "raise", map[string]string{"message": "no"})
			var toolErr *pyvisor.ToolError
			Expect(errorsAs(err, &toolErr)).To(BeTrue(), "a *ToolError: %v", err)
		}
		_, err := execute(rt, "no_such_tool", nil)
		Expect(err).To(MatchError(pyvisor.ErrUnknownTool))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err = rt.Execute(ctx, poolName, "sleep", map[string]float64{"seconds": 5})
		cancel()
		Expect(err).To(MatchError(context.DeadlineExceeded))
		// The worker is free again once the cancelled call has ended in Python.
		Eventually(func() int { return inFlight(rt) }).Should(BeZero())
		_, err = execute(rt, "add", map[string]int{"a": 2, "b": 2})
		Expect(err).NotTo(HaveOccurred())

		fams := mustScrape(rt)
		p := func(tool, outcome string) L { return L{"pool": poolName, "tool": tool, "outcome": outcome} }
		Expect(fams.Value("pyvisor_calls_total", p("add", "ok"))).To(Equal(4.0))
		Expect(fams.Value("pyvisor_calls_total", p("raise", "tool_error"))).To(Equal(2.0))
		Expect(fams.Value("pyvisor_calls_total", p("_unknown", "unknown_tool"))).To(Equal(1.0))
		Expect(fams.Series("pyvisor_calls_total", L{"tool": "no_such_tool"})).To(BeZero(), "an unknown tool's name is not a label value")
		Expect(fams.Value("pyvisor_calls_total", p("sleep", "timeout"))).To(Equal(1.0))
		Expect(fams.Value("pyvisor_calls_total", L{"pool": poolName})).To(Equal(8.0))

		for _, o := range []L{p("add", "ok"), p("raise", "tool_error"), p("_unknown", "unknown_tool"), p("sleep", "timeout")} {
			Expect(fams.Value("pyvisor_call_duration_seconds", o)).To(Equal(fams.Value("pyvisor_calls_total", o)), "histogram count of %v", o)
		}
		Expect(fams.Value("pyvisor_call_duration_seconds", L{"pool": poolName})).To(Equal(8.0))
		for _, m := range fams["pyvisor_call_duration_seconds"].GetMetric() {
			if matches(m, p("sleep", "timeout")) {
				Expect(m.GetHistogram().GetSampleSum()).To(BeNumerically(">=", 0.3), "the timed-out call lasted its deadline")
			}
		}
	})

	Context("when a pool without a queue is saturated", func() {
		It("counts the rejection by reason and the call's outcome", func() {
			rt := start(pool(1, func(p *pyvisor.PoolConfig) { p.QueueSize = pyvisor.NoQueue }))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := rt.Execute(ctx, poolName, "hang", map[string]float64{"seconds": 30})
				done <- err
			}()
			Eventually(func() int { return inFlight(rt) }).Should(Equal(1))
			for range 2 {
				_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
				Expect(err).To(MatchError(pyvisor.ErrPoolSaturated))
			}
			cancel()
			Eventually(done).Should(Receive(MatchError(context.Canceled)))

			fams := mustScrape(rt)
			Expect(fams.Value("pyvisor_queue_rejections_total", L{"pool": poolName, "reason": "queue_full"})).To(Equal(2.0))
			Expect(fams.Value("pyvisor_calls_total", L{"pool": poolName, "tool": "add", "outcome": "pool_saturated"})).To(Equal(2.0))
			Expect(fams.Value("pyvisor_calls_total", L{"pool": poolName, "tool": "hang", "outcome": "cancelled"})).To(Equal(1.0))
		})
	})

	Context("when calls wait in a one-place queue", func() {
		It("shows the queue depth, records the wait, and rejects the call that finds it full", func() {
			rt := start(pool(1, func(p *pyvisor.PoolConfig) { p.QueueSize = 1 }))
			busy := make(chan error, 1)
			go func() {
				_, err := execute(rt, "sleep", map[string]float64{"seconds": 0.5})
				busy <- err
			}()
			Eventually(func() int { return inFlight(rt) }).Should(Equal(1))
			queued := make(chan error, 1)
			go func() {
				_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
				queued <- err
			}()
			Eventually(value(rt, "pyvisor_queue_depth", L{"pool": poolName})).Should(Equal(1.0))
			_, err := execute(rt, "add", map[string]int{"a": 1, "b": 1})
			Expect(err).To(MatchError(pyvisor.ErrPoolSaturated))
			Eventually(busy).Should(Receive(BeNil()))
			Eventually(queued).Should(Receive(BeNil()))

			Eventually(value(rt, "pyvisor_queue_depth", L{"pool": poolName})).Should(BeZero())
			fams := mustScrape(rt)
			Expect(fams.Value("pyvisor_queue_wait_seconds", L{"pool": poolName})).To(Equal(1.0), "one call waited")
			Expect(fams.Value("pyvisor_queue_rejections_total", L{"pool": poolName, "reason": "queue_full"})).To(Equal(1.0))
			for _, m := range fams["pyvisor_queue_wait_seconds"].GetMetric() {
				Expect(m.GetHistogram().GetSampleSum()).To(BeNumerically(">", 0.1), "it waited for the sleep to end")
			}
		})
	})

	Context("when the tracer provider samples the calls", func() {
		It("serves an exemplar with the call's trace id on the duration histogram to an OpenMetrics scrape", func() {
			recorder := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(recorder))
			DeferCleanup(tp.Shutdown, context.Background())
			rt := start(pool(1), pyvisor.WithTracerProvider(tp))
			_, err := execute(rt, "add", map[string]int{"a": 1, "b": 2})
			Expect(err).NotTo(HaveOccurred())

			var traceID string
			for _, s := range recorder.Ended() {
				if s.Name() == "execute add" {
					traceID = s.SpanContext().TraceID().String()
				}
			}
			Expect(traceID).NotTo(BeEmpty(), "the call's span was recorded")

			body, _, err := get(rt.MetricsAddress(), acceptOpenMetrics)
			Expect(err).NotTo(HaveOccurred())
			exemplar := regexp.MustCompile(`(?m)^pyvisor_call_duration_seconds_bucket\{[^}]*tool="add"[^}]*\} \d+ # \{[^}]*trace_id="([0-9a-f]{32})"[^}]*\} [0-9.e+-]+`)
			found := exemplar.FindAllStringSubmatch(body, -1)
			Expect(found).NotTo(BeEmpty(), "an exemplar on a bucket of the add calls:\n%s", body)
			Expect(found[0][1]).To(Equal(traceID))
			GinkgoWriter.Println("exemplar:", found[0][0])

			plain, _, err := get(rt.MetricsAddress(), acceptText)
			Expect(err).NotTo(HaveOccurred())
			Expect(plain).NotTo(ContainSubstring("trace_id"), "the text format has no exemplars")
		})
	})
})

var _ = Describe("Callback metrics", Label("python"), func() {
	It("count Go callbacks by pool, callback and outcome, and record how long they ran", func() {
		rt := start(pool(1),
			pyvisor.WithCallback("ping", func(context.Context, json.RawMessage) (any, error) {
				time.Sleep(20 * time.Millisecond)
				return "pong", nil
			}),
			pyvisor.WithCallback("fail", func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("no") }),
			pyvisor.WithCallback("explode", func(context.Context, json.RawMessage) (any, error) { panic("boom") }),
		)
		for range 2 {
			_, err := execute(rt, "call_go", map[string]string{"name": "ping"})
			Expect(err).NotTo(HaveOccurred())
		}
		for _, name := range []string{"fail", "explode", "not_registered"} {
			_, err := execute(rt, "call_go", map[string]string{"name": name})
			Expect(err).NotTo(HaveOccurred())
		}
		fams := mustScrape(rt)
		ok := L{"pool": poolName, "callback": "ping", "outcome": "ok"}
		Expect(fams.Value("pyvisor_callbacks_total", ok)).To(Equal(2.0))
		Expect(fams.Value("pyvisor_callbacks_total", L{"pool": poolName, "callback": "fail", "outcome": "error"})).To(Equal(1.0))
		Expect(fams.Value("pyvisor_callbacks_total", L{"pool": poolName, "callback": "explode", "outcome": "panic"})).To(Equal(1.0))
		Expect(fams.Series("pyvisor_callbacks_total", L{"callback": "not_registered"})).To(BeZero(),
			"an unknown name is refused in Python, and never becomes a label")
		Expect(fams.Value("pyvisor_callback_duration_seconds", ok)).To(Equal(2.0), "both runs are in the histogram")
	})
})
