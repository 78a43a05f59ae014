package supervision_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/supervision"
)

var _ = Describe("A supervisor's restart intensity", Label("unit"), func() {
	var h *harness
	var sup *supervision.Handle

	BeforeEach(func() {
		h = newHarness()
		sup = h.start(supervision.Spec{MaxRestarts: 3, Within: 5 * time.Second, Children: []supervision.Child{
			worker("a", h.j), worker("b", h.j), worker("c", h.j),
		}})
	})

	It("allows MaxRestarts restarts within the window, counted across all children", func() {
		h.fail(sup, "a")
		h.fail(sup, "b")
		h.clock.Advance(4 * time.Second)
		h.fail(sup, "c")
		Expect(ids[*supervision.ChildRestarted](h.events)).To(Equal([]string{"a", "b", "c"}))
		Expect(of[*supervision.IntensityExceeded](h.events)).To(BeEmpty())
		Expect(sup.Done()).NotTo(BeClosed())
	})

	Context("when one more child fails within the window", func() {
		var mark int
		BeforeEach(func() {
			h.fail(sup, "a")
			h.fail(sup, "b")
			h.fail(sup, "c")
			mark = len(h.j.Lines())
			h.send(sup, "a", boom{})
			Eventually(sup.Done()).Should(BeClosed())
		})

		It("reports the intensity exceeded, then escalates", func() {
			exceeded := of[*supervision.IntensityExceeded](h.events)
			Expect(exceeded).To(ConsistOf(HaveField("Restarts", 4)))
			Expect(exceeded[0].ID).To(Equal("a"))
			Expect(of[*supervision.Escalated](h.events)).To(HaveLen(1))
			Expect(ids[*supervision.ChildRestarted](h.events)).To(Equal([]string{"a", "b", "c"}))
		})

		It("stops every child in reverse start order before failing", func() {
			Expect(ids[*supervision.ChildStopped](h.events)).To(Equal([]string{"c", "b", "a"}))
			Expect(h.j.Since(mark)).To(Equal([]string{"c:shutdown", "c:stopping", "b:shutdown", "b:stopping", "a:stopping"}),
				"the failed child is killed; the others get a graceful stop")
		})

		It("fails a top-level supervisor with an escalation the embedder can inspect", func() {
			var esc *supervision.EscalationError
			Expect(sup.Err()).To(BeAssignableToTypeOf(esc))
			Expect(sup.Err()).To(MatchError(supervision.ErrIntensityExceeded))
			Expect(of[*supervision.Escalated](h.events)[0].Reason).To(Equal(sup.Err()))
		})
	})

	It("never escalates restarts spread beyond the window", func() {
		for i := range 12 {
			h.fail(sup, []string{"a", "b", "c"}[i%3])
			h.clock.Advance(2 * time.Second) // at most 3 restarts in any 5 s
		}
		Expect(ids[*supervision.ChildRestarted](h.events)).To(HaveLen(12))
		Expect(of[*supervision.IntensityExceeded](h.events)).To(BeEmpty())
		Expect(sup.Done()).NotTo(BeClosed())
	})

	It("forgets a restart exactly Within after it", func() {
		h.fail(sup, "a")
		h.clock.Advance(time.Second)
		h.fail(sup, "a")
		h.fail(sup, "a")
		h.clock.Advance(4 * time.Second) // the first restart is now 5 s old: out of the window
		h.fail(sup, "a")
		Expect(of[*supervision.IntensityExceeded](h.events)).To(BeEmpty())
		h.send(sup, "a", boom{}) // four restarts within 4 s
		Eventually(sup.Done()).Should(BeClosed())
		Expect(of[*supervision.IntensityExceeded](h.events)).To(HaveLen(1))
	})
})
