package pyvisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/telemetry"
)

// Callback is a Go function that Python tools call by name, with
// ctx.call_go(name, **kwargs), while one of their calls runs. See bridge.CallbackFunc for
// what its ctx carries (the call's correlation id, trace, deadline and a logger
// zerolog.Ctx returns) and how its errors reach Python.
//
// A callback may call the runtime (Execute, Stream) with its ctx: the call joins the same
// trace and correlation id. If it calls the pool whose tool called it, that pool needs a
// free slot for the inner call (MaxConcurrent > 1, or more workers), else the inner call
// waits for the outer call's deadline; a second pool is the plain way (docs/tools.md).
type Callback = bridge.CallbackFunc

// WithCallback registers fn as the callback name for the tools of every pool. Start fails
// if a name is registered twice for one pool, or is empty or has spaces.
func WithCallback(name string, fn Callback) Option {
	return func(o *options) { o.callbacks = append(o.callbacks, callbackEntry{name: name, fn: fn}) }
}

// WithPoolCallback registers fn as the callback name for the tools of pool only. Start
// fails for a pool the config does not have.
func WithPoolCallback(pool, name string, fn Callback) Option {
	return func(o *options) {
		o.callbacks = append(o.callbacks, callbackEntry{pool: pool, name: name, fn: fn})
	}
}

type callbackEntry struct {
	pool string // "" for every pool
	name string
	fn   Callback
}

// Typed adapts fn to a Callback: the call's keyword arguments are decoded into A (a
// struct, usually, with json tags; a field Python does not know about is refused as
// ErrInvalidArgument), and fn's result is JSON-encoded for Python.
func Typed[A, R any](fn func(ctx context.Context, args A) (R, error)) Callback {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var args A
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&args); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		return fn(ctx, args)
	}
}

// poolCallbacks checks the registrations and returns each pool's callbacks.
func poolCallbacks(cfg Config, entries []callbackEntry) (map[string]map[string]Callback, error) {
	out := map[string]map[string]Callback{}
	for _, pc := range cfg.Pools {
		out[pc.Name] = map[string]Callback{}
	}
	invalid := func(e callbackEntry, problem string) error {
		return fmt.Errorf("%w: callback %q: %s", ErrInvalidConfig, e.name, problem)
	}
	for _, e := range entries {
		if err := bridge.CheckCallbackName(e.name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if e.fn == nil {
			return nil, invalid(e, "its function is nil")
		}
		pools := []string{e.pool}
		if e.pool == "" {
			pools = cfg.poolNames()
		} else if _, ok := out[e.pool]; !ok {
			return nil, invalid(e, fmt.Sprintf("no pool %q in the config", e.pool))
		}
		for _, p := range pools {
			if _, dup := out[p][e.name]; dup {
				return nil, invalid(e, fmt.Sprintf("registered twice for pool %q", p))
			}
			out[p][e.name] = e.fn
		}
	}
	return out, nil
}

func (c Config) poolNames() []string {
	names := make([]string, len(c.Pools))
	for i, p := range c.Pools {
		names[i] = p.Name
	}
	return names
}

// callbackObserver records a pool's callbacks in the metrics.
func callbackObserver(m *telemetry.Metrics, pool string) bridge.CallbackObserver {
	return func(ctx context.Context, name, outcome string, took time.Duration) {
		attrs := metric.WithAttributeSet(attribute.NewSet(
			attribute.String(telemetry.LabelPool, pool),
			attribute.String(telemetry.LabelCallback, name),
			attribute.String(telemetry.LabelOutcome, outcome),
		))
		m.Callbacks.Add(ctx, 1, attrs)
		m.CallbackDuration.Record(ctx, took.Seconds(), attrs)
	}
}
