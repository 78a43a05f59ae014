package pyvisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/telemetry"
)

// reloadLogged is Reload of pool with its result logged, for reloads nobody waits on
// (development mode, a signal): at info the pool's versions before and after, at error
// why it failed (a rollback's cause). why says what asked for it. A reload abandoned
// because ctx ended or the runtime stopped is not logged.
func (r *Runtime) reloadLogged(ctx context.Context, pool, why string) error {
	log := r.log.With().Str(telemetry.LabelPool, pool).Str("trigger", why).Logger()
	before := r.poolVersions(ctx, pool)
	err := r.Reload(ctx, pool)
	switch {
	case err == nil:
		log.Info().Str("version_before", before).Str("version_after", r.poolVersions(ctx, pool)).
			Msg("reloaded: the pool runs the tool code on disk")
	case ctx.Err() != nil || errors.Is(err, ErrStopped):
	case errors.Is(err, ErrRolledBack):
		log.Error().Err(err).Str("version", before).Msg("reload rolled back: the old code serves on")
	case errors.Is(err, ErrUpgrading):
		log.Warn().Err(err).Str("version", before).Msg("reload refused: another reload of the pool runs")
	default:
		log.Error().Err(err).Str("version", before).Msg("reload failed")
	}
	return err
}

// poolStats is the snapshot of one pool.
func (r *Runtime) poolStats(ctx context.Context, pool string) (*messages.PoolStats, error) {
	pid, ok := r.pools[pool]
	if !ok {
		return nil, r.unknownPool(pool)
	}
	reply, err := r.request(ctx, pid, &messages.GetStats{})
	if err != nil {
		return nil, err
	}
	st, ok := reply.(*messages.PoolStats)
	if !ok {
		return nil, fmt.Errorf("pyvisor: stats of pool %s: unexpected reply %T", pool, reply)
	}
	return st, nil
}

// poolVersions names the versions of the code pool's workers run, comma-separated (one,
// but during an upgrade), or "" when that cannot be known.
func (r *Runtime) poolVersions(ctx context.Context, pool string) string {
	st, err := r.poolStats(ctx, pool)
	if err != nil {
		return ""
	}
	var vs []string
	for _, w := range st.Workers {
		if w.Version != "" {
			vs = append(vs, w.Version)
		}
	}
	slices.Sort(vs)
	return strings.Join(slices.Compact(vs), ",")
}
