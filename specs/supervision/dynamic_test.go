package supervision_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/supervision"
)

var _ = Describe("A supervisor's dynamic children", Label("unit"), func() {
	var h *harness
	var sup *supervision.Handle

	BeforeEach(func() {
		h = newHarness()
		sup = h.start(supervision.Spec{Children: []supervision.Child{worker("a", h.j)}})
	})

	It("starts a child at runtime, after the existing ones", func() {
		pid, err := sup.StartChild(h.ctx, worker("b", h.j))
		Expect(err).NotTo(HaveOccurred())
		list, err := sup.WhichChildren(h.ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(list).To(HaveLen(2))
		Expect(list[1]).To(Equal(supervision.ChildInfo{ID: "b", PID: pid, Restart: supervision.Permanent}))
		h.alive(sup, "b")
	})

	It("refuses a second child with the same id", func() {
		_, err := sup.StartChild(h.ctx, worker("a", h.j))
		Expect(err).To(MatchError(supervision.ErrChildExists))
	})

	It("reports a child that fails to start, and forgets its spec", func() {
		_, err := sup.StartChild(h.ctx, worker("b", h.j, failingStart(func() bool { return true })))
		Expect(err).To(MatchError(supervision.ErrStartFailed))
		Expect(sup.CountChildren(h.ctx)).To(Equal(supervision.Counts{Specs: 1, Active: 1, Workers: 1}))
		Expect(sup.Done()).NotTo(BeClosed(), "a dynamic start failure does not fail the supervisor")
	})

	It("supervises a dynamic child like the others", func() {
		_, err := sup.StartChild(h.ctx, worker("b", h.j))
		Expect(err).NotTo(HaveOccurred())
		h.fail(sup, "b")
		Expect(ids[*supervision.ChildRestarted](h.events)).To(Equal([]string{"b"}))
	})

	It("terminates a child and keeps its spec, then restarts it with a new PID", func() {
		before := h.pid(sup, "a")
		Expect(sup.TerminateChild(h.ctx, "a")).To(Succeed())
		Expect(sup.CountChildren(h.ctx)).To(Equal(supervision.Counts{Specs: 1, Active: 0, Workers: 1}))
		Expect(h.pid(sup, "a")).To(BeNil())

		pid, err := sup.RestartChild(h.ctx, "a")
		Expect(err).NotTo(HaveOccurred())
		Expect(pid).NotTo(BeNil())
		Expect(pid.Equal(before)).To(BeTrue(), "same name, same PID address: %v %v", pid, before)
		h.alive(sup, "a")
		Expect(h.j.Lines()).To(Equal([]string{"a:start", "a:shutdown", "a:stopping", "a:start"}))
	})

	It("refuses to restart or delete a running child", func() {
		_, err := sup.RestartChild(h.ctx, "a")
		Expect(err).To(MatchError(supervision.ErrChildRunning))
		Expect(sup.DeleteChild(h.ctx, "a")).To(MatchError(supervision.ErrChildRunning))
	})

	It("deletes a terminated child's spec", func() {
		Expect(sup.TerminateChild(h.ctx, "a")).To(Succeed())
		Expect(sup.DeleteChild(h.ctx, "a")).To(Succeed())
		Expect(sup.WhichChildren(h.ctx)).To(BeEmpty())
		_, err := sup.RestartChild(h.ctx, "a")
		Expect(err).To(MatchError(supervision.ErrChildNotFound))
	})

	It("forgets a temporary child when it is terminated", func() {
		_, err := sup.StartChild(h.ctx, worker("t", h.j, restart(supervision.Temporary)))
		Expect(err).NotTo(HaveOccurred())
		Expect(sup.TerminateChild(h.ctx, "t")).To(Succeed())
		Expect(sup.WhichChildren(h.ctx)).To(ConsistOf(HaveField("ID", "a")))
	})

	It("answers ErrChildNotFound for an unknown id", func() {
		Expect(sup.TerminateChild(h.ctx, "nope")).To(MatchError(supervision.ErrChildNotFound))
	})
})
