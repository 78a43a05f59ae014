package cluster

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/nd"
)

// Bytes of a message from bulkInline together travel on a bulk stream of their own
// (see bulk), not in the message.
const (
	bulkInline = 1 << 20
	// maxBody bounds the bytes a peer's body may announce: a node never allocates what a
	// message merely claims beyond it.
	maxBody = 1 << 34
)

// outBody is the bytes of one message: what stays in it, and what follows on a bulk
// stream.
type outBody struct {
	payload []byte
	arrays  []*workerv1.Array
	body    *clusterv1.Body // nil: everything is inline
	blobs   [][]byte
}

// split takes the bytes of payload and arrays out of their message when together they
// reach bulkInline, to follow on a bulk stream named by a key of this node's.
func (n *Node) split(payload []byte, arrays map[string]nd.Array) outBody {
	total := len(payload)
	for _, a := range arrays {
		total += len(a.Data)
	}
	wire := bridge.ArraysToWire(arrays)
	if total < bulkInline {
		for i, w := range wire {
			w.Data = arrays[w.GetName()].Data
			wire[i] = w
		}
		return outBody{payload: payload, arrays: wire}
	}
	key := n.instance + "-bulk-" + strconv.FormatUint(n.seq.Add(1), 36)
	out := outBody{arrays: wire, body: &clusterv1.Body{Sizes: []uint64{uint64(len(payload))}, Key: key}, blobs: [][]byte{payload}}
	for _, w := range wire {
		data := arrays[w.GetName()].Data
		out.body.Sizes = append(out.body.Sizes, uint64(len(data)))
		out.blobs = append(out.blobs, data)
	}
	return out
}

// alloc returns the memory for blobs of sizes, all at once, and what holds it (nil:
// the Go heap).
type alloc func(ctx context.Context, sizes []uint64) ([][]byte, nd.Owner, error)

// heap is the alloc of plain Go memory.
func heap(_ context.Context, sizes []uint64) ([][]byte, nd.Owner, error) {
	blobs := make([][]byte, len(sizes))
	for i, s := range sizes {
		blobs[i] = make([]byte, s)
	}
	return blobs, nil, nil
}

// received are the blobs a body announced, assembled, and what holds them.
type received struct {
	blobs [][]byte
	owner nd.Owner // nil: the Go heap
}

// release lets go of the blobs' memory (shared memory goes back once the calls using
// it are over too).
func (r received) release() {
	if r.owner != nil {
		r.owner.Release()
	}
}

// receive assembles the blobs body announces (the payload, then the data of each of
// arrays) from its bulk stream, in memory from mem; lost and lostErr as bulk.take. What
// the body announces is checked before anything is allocated.
func (n *Node) receive(ctx context.Context, body *clusterv1.Body, arrays int, mem alloc, lost <-chan struct{}, lostErr func() error) (out received, err error) {
	sizes := body.GetSizes()
	if len(sizes) != 1+arrays {
		return received{}, fmt.Errorf("a body of %d blobs for a payload and %d arrays", len(sizes), arrays)
	}
	var total uint64
	for _, s := range sizes {
		if total += s; s > maxBody || total > maxBody {
			return received{}, fmt.Errorf("%w: a body of over %d bytes announced", bridge.ErrMessageTooLarge, uint64(maxBody))
		}
	}
	defer func() {
		if err != nil {
			out.release()
			out = received{}
		}
	}()
	if out.blobs, out.owner, err = mem(ctx, sizes); err != nil {
		return out, err
	}
	return out, n.bulk.take(ctx, body.GetKey(), out.blobs, lost, lostErr)
}

// detach copies the bytes a message carries inline out of where they lie (a worker's
// memory the result is released back to before the message is serialized).
func (o *outBody) detach() {
	o.payload = bytes.Clone(o.payload)
	for _, a := range o.arrays {
		a.Data = bytes.Clone(a.Data)
	}
}

// sendBody sends the bytes of a body that does not travel inline to the node at addr,
// and returns once it has them all.
func (n *Node) sendBody(ctx context.Context, addr string, out outBody) error {
	if out.body == nil {
		return nil
	}
	return n.bulk.push(ctx, addr, out.body.GetKey(), out.blobs)
}

// payload is the payload of a message that arrived: inline, or the first blob.
func (r received) payload(inline []byte) []byte {
	if len(r.blobs) == 0 {
		return inline
	}
	return r.blobs[0]
}

// arrays are the arrays of a message that arrived, their data inline or the blobs after
// the payload, in order, each with its owner.
func (r received) arrays(wire []*workerv1.Array) (map[string]nd.Array, error) {
	if len(wire) == 0 {
		return nil, nil
	}
	parted := len(r.blobs) > 0
	if parted && len(r.blobs) != len(wire)+1 {
		return nil, fmt.Errorf("%d arrays but %d blobs after the payload", len(wire), len(r.blobs)-1)
	}
	out := make(map[string]nd.Array, len(wire))
	for i, w := range wire {
		data := w.GetData()
		var owner nd.Owner
		if parted {
			data, owner = r.blobs[i+1], r.owner
		}
		a, err := bridge.ArrayFromWire(w, data)
		if err != nil {
			return nil, err
		}
		a.Owner = owner
		out[w.GetName()] = a
	}
	return out, nil
}
