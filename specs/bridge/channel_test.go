package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/bridge"
)

var _ = Describe("The channel to a worker", Label("python"), func() {
	channelTools := func() []bridge.Option {
		return []bridge.Option{bridge.WithTools("channel_tools"), bridge.WithEnv("PYTHONPATH", testdataTools)}
	}

	It("multiplexes many concurrent calls and hands each result to its own caller", func() {
		p, _ := worker()
		const n = 64
		var wg sync.WaitGroup
		got := make([]any, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tool, args := "echo", map[string]any{"value": fmt.Sprintf("caller-%d", i)}
				if i%3 == 0 { // some answers overtake others
					tool, args = "sleep", map[string]any{"seconds": float64(n-i) / 1000}
				}
				res, err := call(p, tool, args)
				errs[i] = err
				if err == nil {
					var v any
					errs[i] = res.Decode(&v)
					got[i] = v
				}
			}()
		}
		wg.Wait()
		for i := range n {
			Expect(errs[i]).NotTo(HaveOccurred())
			if i%3 == 0 {
				Expect(got[i]).To(BeNumerically("~", float64(n-i)/1000, 1e-9), "caller %d", i)
			} else {
				Expect(got[i]).To(Equal(fmt.Sprintf("caller-%d", i)))
			}
		}
		Expect(p.Client().Running()).To(BeZero())
	})

	It("returns at the caller's deadline, cancels the Python body with a frame, and counts the body until it has really ended", func() {
		p, _ := worker(channelTools()...)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		over := make(chan error, 2)
		began := time.Now()
		_, err := p.Client().Execute(ctx, bridge.Request{Tool: "linger", Args: map[string]float64{"seconds": 0.5}, Over: func(err error) { over <- err }})
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Expect(time.Since(began)).To(BeNumerically("<", time.Second))
		Expect(p.Client().Running()).To(Equal(1), "the body goes on for half a second after its cancellation")
		Expect(over).NotTo(Receive(), "Over waits for the body")
		Eventually(over).Should(Receive(MatchError(context.Canceled)))
		Expect(p.Client().Running()).To(BeZero())
		Consistently(over, 100*time.Millisecond).ShouldNot(Receive(), "Over is called once")
		stillServes(p)
	})

	It("answers heartbeats with the bodies still running, a cancelled one that ignores its cancellation included", func() {
		p, _ := worker()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := p.Client().Execute(ctx, bridge.Request{Tool: "ignore_cancel_sync", Args: map[string]float64{"seconds": 0.6}})
		Expect(err).To(MatchError(context.DeadlineExceeded))
		pong, err := p.Client().Heartbeat(context.Background(), 1, "hb-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(pong.InFlight).To(Equal(1), "the thread still runs the tool")
		Eventually(func() (int, error) {
			pong, err := p.Client().Heartbeat(context.Background(), 2, "hb-2")
			return pong.InFlight, err
		}).Should(BeZero())
	})

	It("reports a cancelled body that outlives the cancel grace as stuck, once", func() {
		stuck := make(chan string, 2)
		p, _ := worker(append(channelTools(), bridge.WithCancelGrace(200*time.Millisecond),
			bridge.WithStuckBody(func(tool string) { stuck <- tool }))...)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := p.Client().Execute(ctx, bridge.Request{Tool: "linger", Args: map[string]float64{"seconds": 1}})
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Eventually(stuck).Should(Receive(Equal("linger")))
		Consistently(stuck, 200*time.Millisecond).ShouldNot(Receive())
		Eventually(p.Client().Running, 3*time.Second).Should(BeZero(), "the bridge itself does nothing more: the body ends in its own time")
	})

	It("lets every caller go at its deadline when the worker has stopped reading, a ping too", func() {
		p, _ := worker()
		Expect(syscall.Kill(p.PID(), syscall.SIGSTOP)).To(Succeed())
		DeferCleanup(func() { _ = syscall.Kill(p.PID(), syscall.SIGCONT) })
		var wg sync.WaitGroup
		for range 3 { // 4 MiB each: more than the stream's flow-control window
			wg.Go(func() {
				defer GinkgoRecover()
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
				_, err := p.Client().Execute(ctx, bridge.Request{Tool: "payload_size", Payload: make([]byte, 4<<20)})
				Expect(err).To(MatchError(context.DeadlineExceeded))
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		Eventually(done, 2*time.Second).Should(BeClosed())
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := p.Client().Heartbeat(ctx, 1, "hb-1")
		Expect(err).To(MatchError(context.DeadlineExceeded), "a missed ping, so the heartbeat can give up on the worker")
	})

	It("fails an oversize argument or result in the frames alone, and keeps serving the calls beside it", func() {
		const limit = 64 << 10
		p, _ := worker(bridge.WithMaxMessageBytes(limit), bridge.WithSharedMemory(bridge.SharedMemory{Off: true}))
		beside := make(chan error, 1)
		go func() { _, err := call(p, "sleep", map[string]float64{"seconds": 0.3}); beside <- err }()
		_, err := p.Client().Execute(context.Background(), bridge.Request{Tool: "payload_size", Payload: make([]byte, limit+1)})
		Expect(err).To(MatchError(bridge.ErrMessageTooLarge))
		_, err = call(p, "large", map[string]int{"size": limit + 1})
		Expect(err).To(MatchError(bridge.ErrMessageTooLarge))
		Expect(err.Error()).To(ContainSubstring("over the worker's limit"))
		Eventually(beside).Should(Receive(BeNil()))
		res, err := call(p, "large", map[string]int{"size": limit})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Payload).To(HaveLen(limit))
	})

	It("lets a slow stream consumer hold up only its own call", func() {
		p, _ := worker()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		first := make(chan struct{})
		go func() {
			for range p.Client().ExecuteStream(ctx, bridge.Request{Tool: "count", Args: map[string]int{"n": 100_000}}) {
				close(first)
				<-ctx.Done() // never takes a second chunk
				return
			}
		}()
		Eventually(first).Should(BeClosed())
		for range 20 {
			Expect(decoded(p, "add", map[string]int{"a": 1, "b": 1})).To(BeNumerically("==", 2))
		}
		cancel()
		Eventually(p.Client().Running).Should(BeZero(), "the abandoned stream's generator was closed")
	})

	It("is ended by a worker stopped from outside (SIGTERM), which then exits on its own, not killed", func() {
		p, _ := worker()
		Expect(syscall.Kill(p.PID(), syscall.SIGTERM)).To(Succeed())
		Eventually(p.Done()).Should(BeClosed())
		var exit *bridge.ExitError
		Expect(errors.As(p.Err(), &exit)).To(BeTrue(), "nobody asked it to stop: the runtime replaces it")
		Expect(exit.Signal).To(BeZero(), "it exited, flushing its records, before anyone had to kill it")
		Expect(exit.ExitCode).To(BeZero())
	})

	It("fails the calls in flight at once when it breaks, and takes the worker down with it", func() {
		p, logs := worker(channelTools()...)
		inFlight := make(chan error, 1)
		go func() { _, err := call(p, "sleep", map[string]float64{"seconds": 30}); inFlight <- err }()
		Eventually(p.Client().Running).Should(Equal(1))
		_, _ = call(p, "end_channel", nil) // its own answer may or may not get out first
		Eventually(inFlight, 500*time.Millisecond).Should(Receive(MatchError(bridge.ErrWorkerCrashed)), "at once, though the process still lives")
		Eventually(p.Done()).Should(BeClosed())
		var exit *bridge.ExitError
		Expect(errors.As(p.Err(), &exit)).To(BeTrue())
		Expect(exit.Signal).To(Equal(syscall.SIGKILL))
		Expect(logs.Matching("channel to the python worker broke; killing its process group")).NotTo(BeEmpty())
	})
})
