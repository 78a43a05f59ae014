package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/pyvisor/pyvisor/messages/clusterv1"
)

// Large bytes between nodes travel on bulk streams of their own (see clusterv1.Body):
// one client stream per message body, on a connection of their own to the receiving
// node's remote port, in chunks of bulkChunk bytes under gRPC's flow control.
const (
	bulkMethod = "/pyvisor.cluster.v1.Bulk/Push"
	bulkChunk  = 1 << 20
	// bulkWait bounds how long a stream waits for the message it belongs to (which
	// travels on the actors' connection and may come second).
	bulkWait = time.Minute
)

var bulkDesc = grpc.StreamDesc{StreamName: "Push", ClientStreams: true}

// bulk sends and receives a node's bulk streams.
type bulk struct {
	dial  []grpc.DialOption // the remote's own: its credentials, its buffer pool
	codec codec
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	meets map[string]*meeting
}

// meeting joins a bulk stream and the receiver of its bytes, whichever comes first.
type meeting struct {
	ready   chan struct{} // closed once the receiver has given its memory
	arrived chan struct{} // closed once the stream has come
	done    chan error    // the stream's outcome, once
	mu      sync.Mutex    // guards writing dst against the receiver leaving
	dst     [][]byte
	left    bool // the receiver has gone: the rest is discarded
	i, at   int  // where the next byte goes
}

func (b *bulk) meeting(key string) *meeting {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.meets[key]
	if m == nil {
		m = &meeting{ready: make(chan struct{}), arrived: make(chan struct{}), done: make(chan error, 1)}
		b.meets[key] = m
	}
	return m
}

func (b *bulk) forget(key string, m *meeting) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.meets[key] == m {
		delete(b.meets, key)
	}
}

// take receives the bytes of the body named key into dst (the blobs, in order), once
// its stream arrives; it returns when they are all in, when the stream fails or does
// not come within bulkWait, when lost is closed (the sending node is gone: lostErr's
// error), or when ctx ends. After it returns, nothing writes to dst.
func (b *bulk) take(ctx context.Context, key string, dst [][]byte, lost <-chan struct{}, lostErr func() error) error {
	m := b.meeting(key)
	m.dst = dst
	close(m.ready)
	defer b.forget(key, m)
	leave := func(err error) error {
		m.mu.Lock()
		m.left = true
		m.mu.Unlock()
		return err
	}
	wait := time.NewTimer(bulkWait)
	defer wait.Stop()
	waiting := wait.C
	for {
		select {
		case err := <-m.done:
			return err
		case <-m.arrived:
			waiting, m.arrived = nil, nil
		case <-waiting:
			return leave(fmt.Errorf("bulk stream %s did not come within %v", key, bulkWait))
		case <-lost:
			return leave(lostErr())
		case <-ctx.Done():
			return leave(ctx.Err())
		}
	}
}

// write copies a chunk into the receiver's memory (or drops it, the receiver gone).
func (m *meeting) write(data mem.BufferSlice) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.left {
		return nil
	}
	for _, buf := range data {
		p := buf.ReadOnlyData()
		for len(p) > 0 {
			for m.i < len(m.dst) && m.at == len(m.dst[m.i]) {
				m.i, m.at = m.i+1, 0
			}
			if m.i == len(m.dst) {
				return errors.New("a bulk stream overruns the bytes its body announced")
			}
			n := copy(m.dst[m.i][m.at:], p)
			m.at, p = m.at+n, p[n:]
		}
	}
	return nil
}

func (m *meeting) full() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.i < len(m.dst) && m.at == len(m.dst[m.i]) {
		m.i, m.at = m.i+1, 0
	}
	return m.i == len(m.dst)
}

// sink is what a bulk stream's chunks are received into: the codec writes them into
// the meeting's memory with one copy.
type sink struct{ m *meeting }

// chunk is a piece of bytes sent as it lies: the codec hands it to gRPC with no copy,
// counted in held until gRPC has let go of it (written, or dropped with its stream).
type chunk struct {
	data []byte
	held *held
}

// held counts the chunks gRPC still holds: a mem.BufferPool whose Put is gRPC letting
// go of one.
type held struct {
	mu    sync.Mutex
	n     int
	empty chan struct{} // closed, and replaced, each time n falls to 0
}

func newHeld() *held { return &held{empty: make(chan struct{})} }

func (h *held) add() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
}

func (h *held) Get(int) *[]byte { panic("cluster: held hands out no buffers") }

func (h *held) Put(*[]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n--; h.n == 0 {
		close(h.empty)
		h.empty = make(chan struct{})
	}
}

// wait returns once gRPC holds none of the chunks, false after d.
func (h *held) wait(d time.Duration) bool {
	h.mu.Lock()
	if h.n == 0 {
		h.mu.Unlock()
		return true
	}
	empty := h.empty
	h.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-empty:
		return true
	case <-t.C:
		return false
	}
}

// errBytesHeld: a bulk stream ended but gRPC still held some of its bytes after
// heldWait: they must stay as they are (a worker's memory is not given back).
var errBytesHeld = errors.New("bulk stream: gRPC still holds the bytes")

const heldWait = 10 * time.Second

// serve is the gRPC server's handler for services protoactor does not know: it takes
// the bulk streams.
func (b *bulk) serve(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	if method != bulkMethod {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	var h clusterv1.BulkHeader
	if err := stream.RecvMsg(&h); err != nil {
		return err
	}
	m := b.meeting(h.GetKey())
	wait := time.NewTimer(bulkWait)
	defer wait.Stop()
	select {
	case <-m.ready:
	case <-stream.Context().Done():
		b.forget(h.GetKey(), m)
		return stream.Context().Err()
	case <-wait.C:
		b.forget(h.GetKey(), m)
		return status.Errorf(codes.DeadlineExceeded, "no call took bulk stream %s", h.GetKey())
	}
	close(m.arrived)
	err := b.receive(stream, m)
	m.done <- err
	if err != nil {
		return err
	}
	return stream.SendMsg(&clusterv1.BulkAck{})
}

func (b *bulk) receive(stream grpc.ServerStream, m *meeting) error {
	s := &sink{m: m}
	for {
		err := stream.RecvMsg(s)
		if errors.Is(err, io.EOF) {
			if !m.full() {
				return errors.New("a bulk stream ended before the bytes its body announced")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("bulk stream: %w", err)
		}
	}
}

// push sends blobs on a bulk stream named key to the node at addr, and returns once the
// receiver has them all, or ctx ends; either way, once gRPC no longer reads them (until
// then they must not change). errBytesHeld: gRPC still read them after heldWait, and
// the caller must leave them as they are.
func (b *bulk) push(ctx context.Context, addr, key string, blobs [][]byte) (err error) {
	conn, err := b.conn(addr)
	if err != nil {
		return err
	}
	h := newHeld()
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel() // the stream ends: gRPC drops what it has not written
		if !h.wait(heldWait) {
			err = errors.Join(errBytesHeld, err)
		}
	}()
	failed := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("bulk stream to %s: %w", addr, err)
	}
	s, err := conn.NewStream(ctx, &bulkDesc, bulkMethod, grpc.ForceCodecV2(b.codec))
	if err != nil {
		return failed(err)
	}
	if err := s.SendMsg(&clusterv1.BulkHeader{Key: key}); err != nil {
		return failed(err)
	}
	for _, blob := range blobs {
		for len(blob) > 0 {
			n := min(len(blob), bulkChunk)
			if err := s.SendMsg(&chunk{data: blob[:n], held: h}); err != nil {
				return failed(err)
			}
			blob = blob[n:]
		}
	}
	if err := s.CloseSend(); err != nil {
		return failed(err)
	}
	var ack clusterv1.BulkAck
	if err := s.RecvMsg(&ack); err != nil {
		return failed(err)
	}
	return nil
}

// conn is the bulk connection to addr, made once.
func (b *bulk) conn(addr string) (*grpc.ClientConn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.conns[addr]; c != nil {
		return c, nil
	}
	if b.conns == nil {
		return nil, errors.New("bulk streams: the node has stopped")
	}
	c, err := grpc.NewClient(addr, b.dial...)
	if err != nil {
		return nil, fmt.Errorf("bulk connection to %s: %w", addr, err)
	}
	b.conns[addr] = c
	return c, nil
}

// close closes the bulk connections; no more are made.
func (b *bulk) close() {
	b.mu.Lock()
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
