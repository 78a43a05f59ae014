package supervision_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/supervision"
)

var _ = Describe("A supervisor's events", Label("unit"), func() {
	It("reports a failure with its reason, the message being handled and the stack trace", func() {
		h := newHarness()
		sup := h.start(supervision.Spec{Children: []supervision.Child{worker("a", h.j)}})
		pid := h.pid(sup, "a")
		h.fail(sup, "a")

		failed := of[*supervision.ChildFailed](h.events)
		Expect(failed).To(HaveLen(1))
		Expect(failed[0].ID).To(Equal("a"))
		Expect(failed[0].PID).To(Equal(pid))
		Expect(failed[0].Reason).To(MatchError(errBoom))
		Expect(failed[0].Message).To(Equal(boom{}))
		Expect(failed[0].Starting).To(BeFalse())
		Expect(failed[0].Stack.String()).To(ContainSubstring("supervision_test.(*probe).fail"),
			"the stack is the panicking goroutine's, taken before it unwound")
		Expect(failed[0].Supervisor).To(Equal(sup.PID()))
		Expect(failed[0].Time).To(Equal(h.clock.Now()))
	})

	It("reports every decision in order, from start to stop", func() {
		h := newHarness()
		sup, err := supervision.Start(h.ctx, h.system, supervision.Spec{Children: []supervision.Child{worker("a", h.j)}}, h.opts()...)
		Expect(err).NotTo(HaveOccurred())
		h.fail(sup, "a")
		h.send(sup, "a", quit{})
		Eventually(func() int { return len(of[*supervision.ChildRestarted](h.events)) }).Should(Equal(2))
		Expect(sup.Stop(h.ctx)).To(Succeed())

		var kinds []string
		for _, e := range h.events.All() {
			switch e.(type) {
			case *supervision.ChildStarted:
				kinds = append(kinds, "started")
			case *supervision.ChildFailed:
				kinds = append(kinds, "failed")
			case *supervision.ChildRestarted:
				kinds = append(kinds, "restarted")
			case *supervision.ChildExited:
				kinds = append(kinds, "exited")
			case *supervision.ChildStopped:
				kinds = append(kinds, "stopped")
			case *supervision.SupervisorStopped:
				kinds = append(kinds, "supervisor stopped")
			default:
				kinds = append(kinds, "other")
			}
		}
		Expect(kinds).To(Equal([]string{"started", "failed", "restarted", "exited", "restarted", "stopped", "supervisor stopped"}))
	})
})
