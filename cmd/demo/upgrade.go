package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pyvisor/pyvisor"
)

// upgradeVersion labels the code the upgrade step rolls through the pool. The demo's
// tools are the installed package pyvisor_worker.examples, so the code on disk does not
// change: what rolls through the pool is new Python processes loading it again, and the
// label names that rollout, as a deploy names its release. A changed file would roll the
// same way (docs/upgrades.md).
const upgradeVersion = "demo-v2"

const (
	// callersPerWorker make back-to-back calls throughout the upgrade.
	callersPerWorker = 2
	// loadLead is how long the callers run before the upgrade starts, loadTail how long
	// after it returns: calls before, during and after it.
	loadLead = 500 * time.Millisecond
	loadTail = 300 * time.Millisecond
	// upgradeTimeout bounds the wait for Reload.
	upgradeTimeout = 30 * time.Second
)

// upgradeReport is what the summary shows of the upgrade step.
type upgradeReport struct {
	ran           bool
	calls, failed int           // calls under load that overlapped the upgrade, and the failed ones
	took          time.Duration // ReloadAs's
	before, after string        // the workers' versions
	err           error         // ReloadAs's
}

// upgrade rolls the pool's code through its workers (ReloadAs) while callers keep
// making calls, then checks that none failed and that every worker runs the new version.
func (s *scenario) upgrade(ctx context.Context) error {
	before, err := s.stats(ctx)
	if err != nil {
		return err
	}
	callers := callersPerWorker * s.workers
	s.log.Info().Str("version", versions(before)).Int("callers", callers).
		Msg("callers start making back-to-back add calls; the upgrade will run under their load")
	l := s.startLoad(ctx, callers)
	began, err := s.reloadUnderLoad(ctx)
	ended := time.Now()
	_ = sleep(ctx, loadTail) // a few calls after it, on the new code
	l.end()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	after, serr := s.stats(ctx)
	if serr != nil {
		return serr
	}
	s.upgraded = upgradeReport{ran: true, took: ended.Sub(began), before: versions(before), after: versions(after), err: err}
	s.upgraded.calls, s.upgraded.failed = l.during(began, ended)
	if err == nil {
		s.logSwaps(before, after)
	}
	s.checkUpgrade(l, after)
	return nil
}

// reloadUnderLoad waits for the load to be going, then rolls the new version through
// the pool; it returns when the upgrade began and ReloadAs's error.
func (s *scenario) reloadUnderLoad(ctx context.Context) (time.Time, error) {
	if err := sleep(ctx, loadLead); err != nil {
		return time.Now(), err
	}
	s.log.Info().Str("version", upgradeVersion).
		Msg("reloading the pool as " + upgradeVersion + " under load, one worker at a time (the example tools' code on disk " +
			"is unchanged: the label names this rollout of fresh Python processes, as a deploy names its release)")
	began := time.Now()
	rctx, cancel := context.WithTimeout(ctx, upgradeTimeout)
	defer cancel()
	err := s.rt.ReloadAs(rctx, s.pool, upgradeVersion)
	if err != nil {
		err = fmt.Errorf("reload as %s: %w", upgradeVersion, err)
	}
	return began, err
}

// logSwaps logs, per slot, the Python process that serves it now and the one before.
func (s *scenario) logSwaps(before, after pyvisor.PoolStats) {
	old := map[string]pyvisor.WorkerStats{}
	for _, w := range before.Workers {
		old[w.ID] = w
	}
	for _, w := range after.Workers {
		was := old[w.ID]
		s.log.Info().Str("worker", w.ID).Int("pid", w.PID).Str("version", w.Version).
			Int("was_pid", was.PID).Str("was_version", was.Version).
			Msg("demo sees the slot served by a new Python process of the new version")
	}
}

// checkUpgrade notes in the tally what did not go as expected (a ReloadAs error, a
// failed call under load, a worker not on the new version) and logs the outcome.
func (s *scenario) checkUpgrade(l *load, after pyvisor.PoolStats) {
	u := s.upgraded
	failed, total, first := l.failures()
	ok := s.tally.expect(u.err == nil, fmt.Sprintf("upgrade: %v", u.err))
	ok = s.tally.expect(failed == 0, fmt.Sprintf("upgrade: %d of %d calls under load failed, the first: %v", failed, total, first)) && ok
	ok = s.tally.expect(u.after == upgradeVersion, fmt.Sprintf("upgrade: the workers run %q, want %q", u.after, upgradeVersion)) && ok
	ok = s.tally.expect(u.before != u.after, fmt.Sprintf("upgrade: the version stayed %q", u.before)) && ok
	ok = s.tally.expect(!after.Upgrading, "upgrade: the pool still says it is upgrading after ReloadAs returned") && ok
	ev, msg := s.log.Info(), "the upgrade is done: every worker runs "+upgradeVersion+", and no call failed meanwhile"
	if !ok {
		ev, msg = s.log.Error().Err(u.err), "the upgrade did not go as expected"
	}
	ev.Int("calls_during", u.calls).Int("failed_during", u.failed).Int("calls_under_load", total).Int("failed_under_load", failed).
		Stringer("took", u.took.Round(time.Millisecond)).Str("before", u.before).Str("after", u.after).Msg(msg)
}

// versions names the code versions the pool's workers run: one, or several joined by
// commas (a worker that is down has none).
func versions(st pyvisor.PoolStats) string {
	seen := map[string]bool{}
	for _, w := range st.Workers {
		if w.Version != "" {
			seen[w.Version] = true
		}
	}
	if len(seen) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(seen)), ",")
}
