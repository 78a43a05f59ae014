package supervision_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/supervision"
)

var _ = Describe("A supervisor's child restart types", Label("unit"), func() {
	type exitKind string
	const (
		normal   exitKind = "stops itself (a normal exit)"
		abnormal exitKind = "panics (an abnormal exit)"
		shutdown exitKind = "is terminated by its supervisor (a shutdown)"
	)

	DescribeTable("decide whether a child that exits is restarted",
		func(r supervision.Restart, how exitKind, restarted bool) {
			h := newHarness()
			sup := h.start(supervision.Spec{Children: []supervision.Child{worker("w", h.j, restart(r))}})
			switch how {
			case normal:
				h.send(sup, "w", quit{})
				Eventually(func() []string { return ids[*supervision.ChildExited](h.events) }).Should(Equal([]string{"w"}))
			case abnormal:
				h.fail(sup, "w")
			case shutdown:
				Expect(sup.TerminateChild(h.ctx, "w")).To(Succeed())
			}
			h.settle(sup)

			if restarted {
				Expect(ids[*supervision.ChildRestarted](h.events)).To(Equal([]string{"w"}))
				h.alive(sup, "w")
				return
			}
			Expect(ids[*supervision.ChildRestarted](h.events)).To(BeEmpty())
			children, err := sup.WhichChildren(h.ctx)
			Expect(err).NotTo(HaveOccurred())
			if r == supervision.Temporary {
				Expect(children).To(BeEmpty(), "a temporary child's spec is deleted when it exits")
			} else {
				Expect(children).To(ConsistOf(HaveField("PID", BeNil())))
			}
		},
		Entry("permanent, normal exit: restarted", supervision.Permanent, normal, true),
		Entry("permanent, abnormal exit: restarted", supervision.Permanent, abnormal, true),
		Entry("permanent, shutdown: not restarted", supervision.Permanent, shutdown, false),
		Entry("transient, normal exit: not restarted", supervision.Transient, normal, false),
		Entry("transient, abnormal exit: restarted", supervision.Transient, abnormal, true),
		Entry("transient, shutdown: not restarted", supervision.Transient, shutdown, false),
		Entry("temporary, normal exit: not restarted", supervision.Temporary, normal, false),
		Entry("temporary, abnormal exit: not restarted", supervision.Temporary, abnormal, false),
		Entry("temporary, shutdown: not restarted", supervision.Temporary, shutdown, false),
	)

	It("keeps a restarted child's PID and the messages queued for it", func() {
		h := newHarness()
		sup := h.start(supervision.Spec{Children: []supervision.Child{worker("w", h.j)}})
		before := h.pid(sup, "w")
		reply := make(chan string, 1)
		h.system.Root.Send(before, boom{})
		h.system.Root.Send(before, ping{reply: reply})
		Eventually(reply).Should(Receive(Equal("w")))
		Expect(h.pid(sup, "w")).To(Equal(before))
		Expect(h.j.Lines()).To(Equal([]string{"w:start", "w:restarting", "w:start"}))
	})
})
