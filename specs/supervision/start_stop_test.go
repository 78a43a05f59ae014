package supervision_test

import (
	"context"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/supervision"
)

var _ = Describe("A supervisor's start and stop", Label("unit"), func() {
	It("starts its children in order, each after the previous one has started", func() {
		h := newHarness()
		h.start(supervision.Spec{Children: []supervision.Child{worker("a", h.j), worker("b", h.j), worker("c", h.j)}})
		Expect(h.j.Lines()).To(Equal([]string{"a:start", "b:start", "c:start"}))
		Expect(ids[*supervision.ChildStarted](h.events)).To(Equal([]string{"a", "b", "c"}))
	})

	Context("when a child fails to start", func() {
		It("fails the start and stops the children already started, in reverse order", func() {
			h := newHarness()
			spec := supervision.Spec{Children: []supervision.Child{
				worker("a", h.j), worker("b", h.j),
				worker("c", h.j, failingStart(func() bool { return true })),
				worker("d", h.j),
			}}
			sup, err := supervision.Start(h.ctx, h.system, spec, h.opts()...)
			Expect(sup).To(BeNil())
			Expect(err).To(MatchError(supervision.ErrStartFailed))
			Expect(err.Error()).To(ContainSubstring("c cannot start"))
			Expect(h.j.Lines()).To(Equal([]string{
				"a:start", "b:start", "c:start", "c:stopping", "b:shutdown", "b:stopping", "a:shutdown", "a:stopping",
			}), "d is never started")
			Expect(of[*supervision.ChildFailed](h.events)).To(ConsistOf(HaveField("Starting", true)))
			Expect(ids[*supervision.ChildStopped](h.events)).To(Equal([]string{"c", "b", "a"}))
		})

		It("does not count a failed restart's start as a start failure, but as one more restart", func() {
			h := newHarness()
			var failing atomic.Bool
			sup := h.start(supervision.Spec{Children: []supervision.Child{
				worker("a", h.j, failingStart(failing.Load)),
			}})
			failing.Store(true)
			h.send(sup, "a", boom{})
			Eventually(sup.Done()).Should(BeClosed(), "the restarts keep failing until the intensity is exceeded")
			Expect(of[*supervision.ChildFailed](h.events)).To(HaveLen(4))
			Expect(sup.Err()).To(MatchError(supervision.ErrIntensityExceeded))
		})
	})

	Context("when it is stopped", func() {
		var h *harness
		var sup *supervision.Handle

		BeforeEach(func() {
			h = newHarness()
			var err error
			sup, err = supervision.Start(h.ctx, h.system, supervision.Spec{Children: []supervision.Child{
				worker("a", h.j, shutdown(supervision.Timeout(time.Second))),
				worker("b", h.j, shutdown(supervision.Timeout(time.Second)), trapping("stop")),
				worker("c", h.j, shutdown(supervision.Timeout(time.Second)), trapping("ignore")),
			}}, h.opts()...)
			Expect(err).NotTo(HaveOccurred())
		})

		It("stops its children in reverse start order, killing one that ignores stop after its timeout", func() {
			stopped := make(chan error, 1)
			go func() { stopped <- sup.Stop(context.Background()) }()

			Eventually(h.j.Lines).Should(ContainElement("c:shutdown"))
			Eventually(h.clock.Pending).Should(Equal(1), "c's shutdown timer")
			h.clock.Advance(999 * time.Millisecond)
			Consistently(h.j.Lines, "50ms").ShouldNot(ContainElement("c:stopping"), "c still has time")
			h.clock.Advance(time.Millisecond)
			Eventually(stopped).Should(Receive(BeNil()))

			Expect(h.j.Since(3)).To(Equal([]string{
				"c:shutdown", "c:stopping", "b:shutdown", "b:stopping", "a:shutdown", "a:stopping",
			}))
			stops := of[*supervision.ChildStopped](h.events)
			Expect(ids[*supervision.ChildStopped](h.events)).To(Equal([]string{"c", "b", "a"}))
			Expect(stops[0].Killed).To(BeTrue(), "c ignored its ShutdownRequest")
			Expect(stops[1].Killed).To(BeFalse(), "b stopped itself after cleaning up")
			Expect(stops[2].Killed).To(BeFalse(), "a stopped after handling its ShutdownRequest")
			Expect(of[*supervision.SupervisorStopped](h.events)).To(HaveLen(1))
			Expect(sup.Err()).NotTo(HaveOccurred())
		})
	})

	Context("with each kind of shutdown", func() {
		It("stops a graceful child after the messages queued before, and kills a brutal one without asking", func() {
			h2 := newHarness()
			s2, err := supervision.Start(h2.ctx, h2.system, supervision.Spec{Children: []supervision.Child{
				worker("graceful", h2.j),
				worker("brutal", h2.j, shutdown(supervision.BrutalKill())),
			}}, h2.opts()...)
			Expect(err).NotTo(HaveOccurred())
			// The replies come from the same goroutines the supervisor stops,
			// after the ShutdownRequest (graceful) or the Stop (brutal).
			graceful, brutal := make(chan string, 1), make(chan string, 1)
			h2.send(s2, "graceful", ping{reply: graceful})
			h2.send(s2, "brutal", ping{reply: brutal})
			Expect(s2.Stop(h2.ctx)).To(Succeed())
			Expect(graceful).To(Receive(Equal("graceful")))
			Expect(ids[*supervision.ChildStopped](h2.events)).To(Equal([]string{"brutal", "graceful"}))
			Expect(h2.j.Lines()).NotTo(ContainElement("brutal:shutdown"))
		})

		It("waits for a child with an infinite shutdown however long it takes", func() {
			h2 := newHarness()
			s2, err := supervision.Start(h2.ctx, h2.system, supervision.Spec{Children: []supervision.Child{
				worker("slow", h2.j, shutdown(supervision.Infinity()), trapping("ignore")),
			}}, h2.opts()...)
			Expect(err).NotTo(HaveOccurred())
			ctx, cancel := context.WithCancel(h2.ctx)
			done := make(chan error, 1)
			go func() { done <- s2.Stop(ctx) }()
			Eventually(h2.j.Lines).Should(ContainElement("slow:shutdown"))
			Expect(h2.clock.Pending()).To(BeZero(), "no timer: infinity")
			h2.clock.Advance(time.Hour)
			Consistently(done, "50ms").ShouldNot(Receive())
			cancel() // the embedder gives up: the supervisor and its child are killed
			Eventually(done).Should(Receive(MatchError(context.Canceled)))
			Expect(h2.j.Lines()).To(ContainElement("slow:stopping"))
		})
	})
})
