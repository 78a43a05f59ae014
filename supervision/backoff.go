package supervision

import (
	"math/rand/v2"
	"time"
)

// Rand is the random source of backoff jitter; *rand.Rand from math/rand/v2
// implements it. The supervisor calls it from its own goroutine only.
type Rand interface {
	Int64N(n int64) int64
}

// Backoff delays restarts exponentially with full jitter: the delay before a
// child's restart number n (n = 0 for its first restart within the intensity
// window) is drawn uniformly from [0, min(Max, Base*Multiplier^n)].
type Backoff struct {
	// Base is the ceiling of the first delay. Required (> 0).
	Base time.Duration
	// Max caps every ceiling. Zero means no cap beyond overflow.
	Max time.Duration
	// Multiplier grows the ceiling at each restart. Zero means 2; below 1 is
	// treated as 1 (a constant ceiling).
	Multiplier float64
	// Rand is the jitter source; nil means math/rand/v2's global source.
	Rand Rand
}

type globalRand struct{}

func (globalRand) Int64N(n int64) int64 { return rand.Int64N(n) }

// Ceiling returns min(Max, Base*Multiplier^attempt), the upper bound of the
// delay before restart number attempt (0-based).
func (b Backoff) Ceiling(attempt int) time.Duration {
	if b.Base <= 0 {
		return 0
	}
	maxD := b.Max
	if maxD <= 0 {
		maxD = time.Duration(1<<63 - 1)
	}
	m := b.Multiplier
	switch {
	case m == 0:
		m = 2
	case m < 1:
		m = 1
	}
	c := b.Base
	for i := 0; i < attempt && c < maxD; i++ {
		next := float64(c) * m
		if next >= float64(maxD) {
			return maxD
		}
		c = time.Duration(next)
	}
	return min(c, maxD)
}

// Delay draws the delay before restart number attempt: uniform in
// [0, Ceiling(attempt)].
func (b Backoff) Delay(attempt int) time.Duration {
	c := b.Ceiling(attempt)
	if c <= 0 {
		return 0
	}
	r := b.Rand
	if r == nil {
		r = globalRand{}
	}
	if c == time.Duration(1<<63-1) {
		return time.Duration(r.Int64N(int64(c)))
	}
	return time.Duration(r.Int64N(int64(c) + 1))
}
