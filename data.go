package pyvisor

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/nd"
	"github.com/pyvisor/pyvisor/shm"
	"github.com/pyvisor/pyvisor/telemetry"
)

// Buffer is memory for a call's payload that Go fills in place: in the pool's shared
// memory, where the worker reads it with no copy (see Runtime.Alloc). Bytes is valid
// until Release. A call made WithBuffer holds the buffer from its start (Execute is
// called, a Stream's iteration begins) until its Python body is over, so Release may
// come as soon as Execute returns or the iteration has begun, even while the body still
// reads it: the memory goes back when the last holder lets go. A call started after
// Release fails with ErrInvalidArgument.
type Buffer struct {
	lease *shm.Lease // nil: plain memory (no shared memory for that pool)
	heap  []byte
	once  sync.Once
}

// Bytes is the buffer's memory, to fill before the call.
func (b *Buffer) Bytes() []byte {
	if b.lease != nil {
		return b.lease.Bytes()
	}
	return b.heap
}

// Release gives the buffer back; only the first call counts. Bytes must not be used
// after it.
func (b *Buffer) Release() {
	b.once.Do(func() {
		if b.lease != nil {
			b.lease.Release()
		}
		b.heap = nil
	})
}

// Alloc returns an n-byte Buffer for a payload to pool, in the pool's shared memory:
// fill it, send it WithBuffer, and Release it. When the pool's shared memory is full it
// waits for room until ctx ends; n over the pool's MaxPayloadBytes fails at once with
// ErrMessageTooLarge. A pool with shared memory off (or on another node) gets plain
// memory, sent like WithPayload.
func (r *Runtime) Alloc(ctx context.Context, pool string, n int) (*Buffer, error) {
	if r.stopped.Load() {
		return nil, fmt.Errorf("pyvisor: alloc: %w", ErrStopped)
	}
	if n < 0 {
		return nil, fmt.Errorf("pyvisor: alloc %d bytes: %w", n, ErrInvalidArgument)
	}
	arena := r.arenas[pool]
	if arena == nil || n == 0 {
		if _, ok := r.pools[pool]; !ok && r.node == nil {
			return nil, fmt.Errorf("pyvisor: alloc: %w", r.unknownPool(pool))
		}
		return &Buffer{heap: make([]byte, n)}, nil
	}
	lease, err := arena.Lease(ctx, uint64(n))
	switch {
	case errors.Is(err, shm.ErrClosed): // Stop came first
		return nil, fmt.Errorf("pyvisor: alloc: %w", ErrStopped)
	case errors.Is(err, shm.ErrTooLarge):
		return nil, fmt.Errorf("pyvisor: alloc %d bytes in pool %s: %w: %w", n, pool, ErrMessageTooLarge, err)
	case err != nil:
		return nil, fmt.Errorf("pyvisor: alloc %d bytes in pool %s: %w", n, pool, err)
	}
	return &Buffer{lease: lease}, nil
}

// WithBuffer sends b as the call's payload (the tool's ctx.payload), with no copy when
// b lies in the pool's shared memory. It replaces WithPayload.
func WithBuffer(b *Buffer) CallOption {
	return func(c *callOptions) {
		c.call.Payload = nil
		if b.lease != nil {
			c.call.Buffer = b.lease
			return
		}
		c.call.Payload = b.heap
	}
}

// WithResultView hands a payload the tool returned through shared memory over as it
// lies: Result.Payload is then a view of the worker's memory, with no copy, valid until
// Result.Release, which the caller must call (a view never released holds that memory
// until the worker is replaced and, even then, stays mapped). Without it, Result.Payload
// is a copy on the Go heap and Release does nothing. Stream chunks likewise.
func WithResultView() CallOption { return func(c *callOptions) { c.call.View = true } }

// poolArenas makes the input arena of each pool that uses shared memory.
func poolArenas(cfg Config) (map[string]*shm.Arena, error) {
	arenas := map[string]*shm.Arena{}
	if !shm.Supported() {
		return arenas, nil
	}
	for _, pc := range cfg.Pools {
		m := pc.SharedMemory
		if m.Off {
			continue
		}
		a, err := shm.New("pyvisor-pool-"+pc.Name, uint64(m.PoolBytes), shm.Options{
			MaxRegion: uint64(m.MaxPayloadBytes), Retain: uint64(m.RetainBytes), TrimAfter: m.TrimAfter})
		if err != nil {
			releaseArenas(arenas)
			return nil, fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		arenas[pc.Name] = a
	}
	return arenas, nil
}

func releaseArenas(arenas map[string]*shm.Arena) {
	for _, a := range arenas {
		a.Release()
	}
}

// sharedMemory is the bridge's view of a pool's config.
func sharedMemory(m SharedMemoryConfig, input *shm.Arena) bridge.SharedMemory {
	return bridge.SharedMemory{
		Off:         m.Off || input == nil,
		Threshold:   m.Threshold,
		MaxPayload:  uint64(m.MaxPayloadBytes),
		Input:       input,
		OutputBytes: uint64(m.WorkerBytes),
		Retain:      uint64(m.RetainBytes),
		TrimAfter:   m.TrimAfter,
	}
}

// payloadSize is the size of a call's payload and arrays, in the frame or in shared
// memory.
func payloadSize(call messages.Call) int {
	n := len(call.Payload)
	if call.Buffer != nil {
		n = len(call.Buffer.Bytes())
	}
	return n + arraysSize(call.Arrays)
}

// arraysSize is the bytes of arrays.
func arraysSize(arrays map[string]nd.Array) int {
	n := 0
	for _, a := range arrays {
		n += len(a.Data)
	}
	return n
}

// transport says how n payload bytes of pool travel: through shared memory or in the
// frame (remote pools: in the message).
func (r *Runtime) transport(pool string, n int, remote bool) string {
	if a := r.arenas[pool]; a != nil && !remote && n >= r.thresholds[pool] {
		return "shared_memory"
	}
	return "frame"
}

// recordPayload counts a call's payload bytes one way, and puts them on its span.
func (r *Runtime) recordPayload(ctx context.Context, span trace.Span, pool, direction string, n int, remote bool) {
	if n == 0 {
		return
	}
	t := r.transport(pool, n, remote)
	r.metrics.PayloadBytes.Add(ctx, int64(n), r.payloadAttrs(pool, direction, t))
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("pyvisor.payload.bytes_"+direction, n))
		if t == "shared_memory" {
			span.SetAttributes(attribute.Bool("pyvisor.payload.shared_memory", true))
		}
	}
}

// payloadAttrs is the label set of payload bytes of (pool, direction, transport), built
// once, as callAttrs does for calls.
func (r *Runtime) payloadAttrs(pool, direction, transport string) metric.MeasurementOption {
	key := payloadKey{pool, direction, transport}
	if a, ok := r.attrs.Load(key); ok {
		return a.(metric.MeasurementOption)
	}
	a := metric.WithAttributeSet(attribute.NewSet(
		attribute.String(telemetry.LabelPool, pool),
		attribute.String(telemetry.LabelDirection, direction),
		attribute.String("transport", transport),
	))
	r.attrs.Store(key, a)
	return a
}

type payloadKey struct{ pool, direction, transport string }

// observeSharedMemory reports each pool's input arena in use.
func (r *Runtime) observeSharedMemory(record func(bytes, regions int64, attrs ...attribute.KeyValue)) {
	for pool, a := range r.arenas {
		b, n := a.InUse()
		record(int64(b), int64(n), attribute.String(telemetry.LabelPool, pool))
	}
}
