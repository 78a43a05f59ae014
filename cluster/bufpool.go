package cluster

import (
	"bytes"
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// bufferPool is the gRPC buffer pool of the links between nodes: buffers by powers of
// two, reused without clearing. grpc-go's default pool clears the whole capacity of
// every buffer over 1 MiB it hands out; between nodes the bulk streams' 1 MiB chunks
// and the endpoint's batches of messages are that large, so that clearing cost as much
// as the copies that fill the buffers right after (gRPC writes a buffer it gets before
// reading it). The links carry only this process's own traffic.
type bufferPool struct {
	tiers [maxTier + 1]sync.Pool
}

const (
	minTier = 8  // 256 bytes: smaller buffers come from the smallest tier
	maxTier = 28 // 256 MiB: larger ones are allocated, and dropped after use
)

var _ mem.BufferPool = (*bufferPool)(nil)

func tier(n int) int { return max(bits.Len(uint(n-1)), minTier) }

// Get returns a buffer of length n, its content undefined.
func (p *bufferPool) Get(n int) *[]byte {
	t := tier(n)
	if t > maxTier {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<t)
	return &b
}

// Put takes a buffer back for reuse.
func (p *bufferPool) Put(b *[]byte) {
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 {
		return // not one of ours
	}
	if t := bits.Len(uint(c - 1)); t >= minTier && t <= maxTier {
		p.tiers[t].Put(b)
	}
}

// codec is gRPC's proto codec over a buffer pool of its own (grpc-go's codec takes its
// buffers from the process-wide default pool, which clears them, whatever pool the
// connection has), and the raw codec of bulk streams: a chunk goes out as it lies, and
// comes in straight into the receiver's memory.
type codec struct{ pool mem.BufferPool }

func (codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if ch, ok := v.(*chunk); ok { // a bulk stream's bytes, sent as they lie
		if mem.IsBelowBufferPoolingThreshold(len(ch.data)) {
			return mem.BufferSlice{mem.SliceBuffer(bytes.Clone(ch.data))}, nil // too small to count
		}
		ch.held.add()
		return mem.BufferSlice{mem.NewBuffer(&ch.data, ch.held)}, nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("cluster codec: %T is not a proto message", v)
	}
	size := proto.Size(m)
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.pool.Get(size)
	b, err := proto.MarshalOptions{}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if s, ok := v.(*sink); ok { // a bulk stream's bytes, copied once into place
		return s.m.write(data)
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("cluster codec: %T is not a proto message", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m) // copies what it keeps
}
