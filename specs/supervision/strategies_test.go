package supervision_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/supervision"
)

var _ = Describe("A supervisor's restart strategy", Label("unit"), func() {
	var h *harness
	var sup *supervision.Handle
	var mark int

	startWith := func(s supervision.Strategy) {
		h = newHarness()
		sup = h.start(supervision.Spec{Strategy: s, Children: []supervision.Child{
			worker("a", h.j), worker("b", h.j), worker("c", h.j),
		}})
		mark = len(h.j.Lines())
	}

	failAndSettle := func(id string) {
		h.fail(sup, id)
	}

	Context("with one_for_one", func() {
		It("restarts only the child that failed", func() {
			startWith(supervision.OneForOne)
			failAndSettle("b")
			Expect(h.j.Since(mark)).To(Equal([]string{"b:restarting", "b:start"}))
			Expect(ids[*supervision.ChildRestarted](h.events)).To(Equal([]string{"b"}))
		})
	})

	Context("with one_for_all", func() {
		It("restarts every sibling, in start order, when one fails", func() {
			startWith(supervision.OneForAll)
			failAndSettle("b")
			Expect(h.j.Since(mark)).To(Equal([]string{
				"a:restarting", "a:start", "b:restarting", "b:start", "c:restarting", "c:start",
			}))
			Expect(ids[*supervision.ChildRestarted](h.events)).To(Equal([]string{"a", "b", "c"}))
			Expect(of[*supervision.ChildRestarted](h.events)).To(HaveEach(HaveField("Cause", "b")))
		})

		It("counts the whole restart as one restart of the intensity", func() {
			startWith(supervision.OneForAll)
			for range 3 {
				failAndSettle("c")
			}
			Expect(of[*supervision.IntensityExceeded](h.events)).To(BeEmpty())
			Expect(ids[*supervision.ChildRestarted](h.events)).To(HaveLen(9))
		})
	})

	Context("with rest_for_one", func() {
		It("restarts the failed child and those started after it, in start order", func() {
			startWith(supervision.RestForOne)
			failAndSettle("b")
			Expect(h.j.Since(mark)).To(Equal([]string{"b:restarting", "b:start", "c:restarting", "c:start"}))
			Expect(ids[*supervision.ChildRestarted](h.events)).To(Equal([]string{"b", "c"}))
		})

		It("restarts only the last child when the last one fails", func() {
			startWith(supervision.RestForOne)
			failAndSettle("c")
			Expect(h.j.Since(mark)).To(Equal([]string{"c:restarting", "c:start"}))
		})
	})
})
