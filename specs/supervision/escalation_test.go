package supervision_test

import (
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/supervision"
)

var _ = Describe("A supervisor under a supervisor", Label("unit"), func() {
	var h *harness
	var top *supervision.Handle

	// top (grandparent) ─ pool (parent, at most 1 restart in 5 s) ─ w (worker)
	startTree := func(topMax int) {
		h = newHarness()
		pool := supervision.Spec{MaxRestarts: 1, Within: 5 * time.Second,
			Children: []supervision.Child{worker("w", h.j)}}
		top = h.start(supervision.Spec{MaxRestarts: topMax, Within: 5 * time.Second,
			Children: []supervision.Child{supervision.Nested("pool", pool), worker("logger", h.j)}})
	}

	workerPID := func() *supervision.ChildStarted {
		started := of[*supervision.ChildStarted](h.events)
		for i := len(started) - 1; i >= 0; i-- {
			if started[i].ID == "w" {
				return started[i]
			}
		}
		return nil
	}

	failWorker := func() {
		n := len(of[*supervision.ChildFailed](h.events))
		h.system.Root.Send(workerPID().PID, boom{})
		Eventually(func() int { return len(of[*supervision.ChildFailed](h.events)) }).Should(BeNumerically(">", n))
	}

	It("lists a nested supervisor as a supervisor child", func() {
		startTree(3)
		counts, err := top.CountChildren(h.ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(counts).To(Equal(supervision.Counts{Specs: 2, Active: 2, Supervisors: 1, Workers: 1}))
	})

	Context("when the parent's intensity is exceeded", func() {
		It("escalates to the grandparent, which restarts the parent and so the worker", func() {
			startTree(3)
			parent := workerPID().Supervisor
			failWorker()
			h.settle(top)
			failWorker() // the second restart within 5 s is one too many for the pool
			Eventually(func() []string { return ids[*supervision.ChildRestarted](h.events) }).
				Should(ContainElement("pool"))

			var failed *supervision.ChildFailed
			for _, f := range of[*supervision.ChildFailed](h.events) {
				if f.ID == "pool" {
					failed = f
				}
			}
			Expect(failed).NotTo(BeNil())
			Expect(failed.Supervisor).To(Equal(top.PID()), "the grandparent saw the failure")
			reason, ok := failed.Reason.(error)
			Expect(ok).To(BeTrue())
			Expect(reason).To(MatchError(supervision.ErrIntensityExceeded))
			var esc *supervision.EscalationError
			Expect(errors.As(reason, &esc)).To(BeTrue())
			Expect(esc.Supervisor).To(Equal(parent))

			Eventually(workerPID).Should(HaveField("Supervisor", Equal(parent)),
				"the pool keeps its PID across the restart and starts its worker again")
			Eventually(func() int { return len(ids[*supervision.ChildStarted](h.events)) }).Should(Equal(4))
			h.alive(top, "logger")
		})

		It("fails the grandparent too when the grandparent's own intensity is exceeded", func() {
			startTree(0)
			failWorker()
			h.settle(top)
			failWorker()
			Eventually(top.Done()).Should(BeClosed())
			Expect(top.Err()).To(MatchError(supervision.ErrIntensityExceeded))
			Expect(of[*supervision.Escalated](h.events)).To(HaveLen(2), "the pool's escalation, then the grandparent's")
			Expect(ids[*supervision.ChildStopped](h.events)).To(Equal([]string{"w", "logger", "pool"}),
				"the pool stopped its worker; the grandparent stopped its children in reverse start order")
			Expect(of[*supervision.ChildStopped](h.events)[2].Killed).To(BeTrue(), "the failed pool is killed, not asked")
		})
	})
})
