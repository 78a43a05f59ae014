package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor/internal/spantree"
)

// summary is what the demo prints at the end, on stdout.
type summary struct {
	pool        string
	workers     int
	wall        time.Duration
	interrupted bool
	stopErr     error
	leftover    []int // Python processes still alive after Stop
}

// print writes the summary of s and t to w, and (for -log-format json) logs it as one
// JSON object.
func (sum summary) print(w io.Writer, s *scenario, log zerolog.Logger, jsonLog bool) {
	t := s.tally
	t.mu.Lock()
	calls, failed, errs, fails := t.calls, 0, maps.Clone(t.errors), slices.Clone(t.failures)
	t.mu.Unlock()
	for _, n := range errs {
		failed += n
	}
	p50, p90, p99 := t.percentile(50), t.percentile(90), t.percentile(99)
	verdict := "the scenario went as expected"
	switch {
	case sum.interrupted:
		verdict = "interrupted"
	case len(fails) > 0:
		verdict = fmt.Sprintf("the scenario did NOT go as expected (%d problems)", len(fails))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n── pyvisor demo: summary ─────────────────────────────────────\n")
	fmt.Fprintf(&b, "pool          %s, workers: %d\n", sum.pool, sum.workers)
	fmt.Fprintf(&b, "calls         %d (%d ok, %d failed)\n", calls, calls-failed, failed)
	fmt.Fprintf(&b, "errors        %s\n", counts(errs))
	fmt.Fprintf(&b, "restarts      %s\n", counts(s.final.Restarts))
	if len(s.final.Recycled) > 0 || len(s.final.Rejected) > 0 {
		fmt.Fprintf(&b, "recycled      %s; rejected %s\n", counts(s.final.Recycled), counts(s.final.Rejected))
	}
	fmt.Fprintf(&b, "latency       p50 %v  p90 %v  p99 %v  (successful calls, stream excluded)\n", round(p50), round(p90), round(p99))
	fmt.Fprintf(&b, "stream        %d chunks\n", s.chunks)
	s.upgraded.write(&b)
	for _, id := range slices.Sorted(maps.Keys(s.replaced)) {
		pid := 0
		for _, wk := range s.final.Workers {
			if wk.ID == id {
				pid = wk.PID
			}
		}
		fmt.Fprintf(&b, "replaced      %s: pid %d -> %d\n", id, s.replaced[id], pid)
	}
	switch {
	case sum.stopErr != nil:
		fmt.Fprintf(&b, "stop          %v\n", sum.stopErr)
	case len(sum.leftover) > 0:
		fmt.Fprintf(&b, "stop          Python processes left behind: %v\n", sum.leftover)
	default:
		fmt.Fprintf(&b, "stop          clean: all %d Python processes seen are gone\n", len(s.pids))
	}
	fmt.Fprintf(&b, "wall time     %v\n", sum.wall.Round(10*time.Millisecond))
	fmt.Fprintf(&b, "result        %s\n", verdict)
	for _, f := range fails {
		fmt.Fprintf(&b, "  - %s\n", f)
	}
	_, _ = io.WriteString(w, b.String())

	if jsonLog {
		ev := log.Info()
		if s.upgraded.ran {
			ev = ev.Dict("upgrade", s.upgraded.dict())
		}
		ev.Str("pool", sum.pool).Int("workers", sum.workers).Int("calls", calls).Int("failed", failed).
			Any("errors", errs).Any("restarts", s.final.Restarts).
			Dur("p50", p50).Dur("p90", p90).Dur("p99", p99).Int("chunks", s.chunks).
			Ints("leftover_pids", sum.leftover).Strs("problems", fails).Bool("interrupted", sum.interrupted).
			Dur("wall", sum.wall).Msg("demo summary")
	}
}

// write writes the upgrade's lines of the summary, if the step ran.
func (u upgradeReport) write(b *strings.Builder) {
	if !u.ran {
		return
	}
	fmt.Fprintf(b, "upgrade       %s -> %s in %v, under load\n", u.before, u.after, u.took.Round(time.Millisecond))
	fmt.Fprintf(b, "  its calls   %d during the upgrade, %d failed\n", u.calls, u.failed)
	if u.err != nil {
		fmt.Fprintf(b, "  error       %v\n", u.err)
	}
}

// dict is the upgrade in the JSON summary.
func (u upgradeReport) dict() *zerolog.Event {
	d := zerolog.Dict().Int("calls", u.calls).Int("failed", u.failed).Dur("took", u.took).
		Str("version_before", u.before).Str("version_after", u.after)
	if u.err != nil {
		d = d.Str("error", u.err.Error())
	}
	return d
}

// counts formats counts by name, sorted: "crash=1 heartbeat=1", or "none".
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// round rounds a duration for display.
func round(d time.Duration) time.Duration { return spantree.Round(d) }
