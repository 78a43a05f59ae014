package supervision_test

import (
	"math/rand/v2"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/supervision"
)

// maxRand always draws the largest value, so the delay is the ceiling.
type maxRand struct{}

func (maxRand) Int64N(n int64) int64 { return n - 1 }

var _ = Describe("A supervisor's restart backoff", Label("unit"), func() {
	b := supervision.Backoff{Base: 100 * time.Millisecond, Max: time.Second}

	It("doubles its ceiling at each attempt, up to the cap", func() {
		var ceilings []time.Duration
		for n := range 7 {
			ceilings = append(ceilings, b.Ceiling(n))
		}
		Expect(ceilings).To(Equal([]time.Duration{
			100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
			time.Second, time.Second, time.Second,
		}))
		Expect(b.Ceiling(1000)).To(Equal(time.Second), "no overflow")
	})

	It("grows its ceiling by the multiplier when one is given", func() {
		slow := supervision.Backoff{Base: 100 * time.Millisecond, Max: time.Second, Multiplier: 1.5}
		Expect([]time.Duration{slow.Ceiling(0), slow.Ceiling(1), slow.Ceiling(2), slow.Ceiling(10)}).To(Equal([]time.Duration{
			100 * time.Millisecond, 150 * time.Millisecond, 225 * time.Millisecond, time.Second,
		}))
		flat := supervision.Backoff{Base: 100 * time.Millisecond, Multiplier: 1}
		Expect(flat.Ceiling(50)).To(Equal(100 * time.Millisecond))
	})

	It("draws every delay within [0, ceiling] (full jitter), covering the range", func() {
		seed := GinkgoRandomSeed()
		jb := b
		jb.Rand = rand.New(rand.NewPCG(uint64(seed), 1))
		for n := range 6 {
			lo, hi := b.Ceiling(n), time.Duration(0)
			for range 2000 {
				d := jb.Delay(n)
				Expect(d).To(And(BeNumerically(">=", 0), BeNumerically("<=", b.Ceiling(n))), "seed %d", seed)
				lo, hi = min(lo, d), max(hi, d)
			}
			Expect(lo).To(BeNumerically("<", b.Ceiling(n)/10), "seed %d: jitter reaches near zero", seed)
			Expect(hi).To(BeNumerically(">", b.Ceiling(n)*9/10), "seed %d: jitter reaches near the ceiling", seed)
		}
	})

	It("delays a restart by the drawn delay, on the supervisor's clock", func() {
		h := newHarness()
		spec := supervision.Spec{Within: time.Minute, MaxRestarts: 10,
			Backoff:  &supervision.Backoff{Base: 100 * time.Millisecond, Max: time.Second, Rand: maxRand{}},
			Children: []supervision.Child{worker("a", h.j)}}
		sup := h.start(spec)

		for attempt, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
			h.send(sup, "a", boom{})
			Eventually(func() int { return len(of[*supervision.RestartDelayed](h.events)) }).Should(Equal(attempt + 1))
			delayed := of[*supervision.RestartDelayed](h.events)[attempt]
			Expect(delayed.Attempt).To(Equal(attempt))
			Expect(delayed.Delay).To(Equal(want))

			Eventually(h.clock.Pending).Should(Equal(1))
			h.clock.Advance(want - time.Nanosecond)
			Expect(h.clock.Pending()).To(Equal(1), "not yet")
			Expect(of[*supervision.ChildRestarted](h.events)).To(HaveLen(attempt))
			h.clock.Advance(time.Nanosecond)
			Eventually(func() int { return len(of[*supervision.ChildRestarted](h.events)) }).Should(Equal(attempt + 1))
		}
		h.alive(sup, "a")
	})

	It("starts again from the base delay once earlier restarts leave the window", func() {
		h := newHarness()
		sup := h.start(supervision.Spec{Within: 5 * time.Second, MaxRestarts: 10,
			Backoff:  &supervision.Backoff{Base: 100 * time.Millisecond, Rand: maxRand{}},
			Children: []supervision.Child{worker("a", h.j)}})
		for range 2 {
			n := len(of[*supervision.RestartDelayed](h.events))
			h.send(sup, "a", boom{})
			Eventually(h.clock.Pending).Should(Equal(1))
			h.clock.Advance(time.Second)
			Eventually(func() int { return len(of[*supervision.ChildRestarted](h.events)) }).Should(Equal(n + 1))
		}
		h.clock.Advance(5 * time.Second)
		h.send(sup, "a", boom{})
		Eventually(func() int { return len(of[*supervision.RestartDelayed](h.events)) }).Should(Equal(3))
		delays := of[*supervision.RestartDelayed](h.events)
		Expect([]int{delays[0].Attempt, delays[1].Attempt, delays[2].Attempt}).To(Equal([]int{0, 1, 0}))
		Eventually(h.clock.Pending).Should(Equal(1))
		h.clock.Advance(time.Second)
		h.settle(sup)
	})
})
