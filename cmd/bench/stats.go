package main

import (
	"math"
	"slices"
	"time"
)

// summary is the distribution of recorded durations.
type summary struct {
	min, p50, p90, p99, max, mean time.Duration
}

// summarize computes percentiles (nearest rank) and the mean of ds.
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return summary{
		min:  s[0],
		p50:  percentile(s, 0.50),
		p90:  percentile(s, 0.90),
		p99:  percentile(s, 0.99),
		max:  s[len(s)-1],
		mean: total / time.Duration(len(s)),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(xs []float64) (float64, float64) {
	return slices.Min(xs), slices.Max(xs)
}
