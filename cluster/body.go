package cluster

import (
	"context"
	"errors"
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
	// maxBlob bounds one blob a peer may announce: a node never allocates what a
	// message merely claims beyond it.
	maxBlob = 1 << 34
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

// alloc returns the memory for blob i of n bytes and what holds it (nil owner: Go heap).
type alloc func(ctx context.Context, i int, n int) ([]byte, nd.Owner, error)

// heap is the alloc of plain Go memory.
func heap(_ context.Context, _ int, n int) ([]byte, nd.Owner, error) {
	return make([]byte, n), nil, nil
}

// received are the blobs a body announced, assembled, and what holds each.
type received struct {
	blobs  [][]byte
	owners []nd.Owner
}

// release lets go of the blobs' memory (shared memory goes back once the calls using
// it are over too).
func (r received) release() {
	for _, o := range r.owners {
		if o != nil {
			o.Release()
		}
	}
}

// receive assembles the blobs body announces (the payload, then each array's data) from
// its bulk stream, in memory from mem; lost and lostErr as bulk.take.
func (n *Node) receive(ctx context.Context, body *clusterv1.Body, mem alloc, lost <-chan struct{}, lostErr func() error) (out received, err error) {
	sizes := body.GetSizes()
	if len(sizes) == 0 {
		return received{}, errors.New("a body announcing no payload")
	}
	for _, s := range sizes {
		if s > maxBlob {
			return received{}, fmt.Errorf("%w: a blob of %d bytes announced, over %d", bridge.ErrMessageTooLarge, s, uint64(maxBlob))
		}
	}
	defer func() {
		if err != nil {
			out.release()
			out = received{}
		}
	}()
	for i, s := range sizes {
		b, owner, err := mem(ctx, i, int(s))
		if err != nil {
			return out, err
		}
		out.blobs = append(out.blobs, b[:s:s])
		out.owners = append(out.owners, owner)
	}
	return out, n.bulk.take(ctx, body.GetKey(), out.blobs, lost, lostErr)
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
			data, owner = r.blobs[i+1], r.owners[i+1]
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
