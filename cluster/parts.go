package cluster

import (
	"context"
	"fmt"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/nd"
)

// Large bytes between nodes travel as Parts after their message, partWindow of them in
// flight at most: the receiver grants more as it takes them in.
const (
	partSize   = 1 << 20
	partWindow = 16
	// maxBlob bounds one blob a peer may announce: a node never allocates what a
	// message merely claims beyond it.
	maxBlob = 1 << 34
)

// outgoing bytes of one message: what stays in it, and what follows as Parts.
type outBody struct {
	payload []byte
	arrays  []*workerv1.Array
	body    *clusterv1.Body // nil: everything is inline
	blobs   [][]byte
}

// split takes the bytes of payload and arrays out of their message when together they
// reach partSize.
func split(payload []byte, arrays map[string]nd.Array) outBody {
	total := len(payload)
	for _, a := range arrays {
		total += len(a.Data)
	}
	wire := bridge.ArraysToWire(arrays)
	if total < partSize {
		for i, w := range wire {
			w.Data = arrays[w.GetName()].Data
			wire[i] = w
		}
		return outBody{payload: payload, arrays: wire}
	}
	out := outBody{arrays: wire, body: &clusterv1.Body{Sizes: []uint64{uint64(len(payload))}}, blobs: [][]byte{payload}}
	for _, w := range wire {
		data := arrays[w.GetName()].Data
		out.body.Sizes = append(out.body.Sizes, uint64(len(data)))
		out.blobs = append(out.blobs, data)
	}
	return out
}

// sendParts sends blobs as Parts of call id, each waiting for a credit.
func sendParts(ctx context.Context, id string, blobs [][]byte, credits chan struct{}, send func(*clusterv1.Part)) error {
	for _, b := range blobs {
		for len(b) > 0 {
			n := min(len(b), partSize)
			select {
			case <-credits:
			case <-ctx.Done():
				return ctx.Err()
			}
			send(&clusterv1.Part{Id: id, Data: b[:n]})
			b = b[n:]
		}
	}
	// Every Part is in once the receiver has granted the whole window back: only then
	// are the bytes free to go (a view of a worker's memory, say). The window then
	// serves the next message's Parts.
	for back := range partWindow {
		select {
		case <-credits:
		case <-ctx.Done():
			for range back {
				credits <- struct{}{}
			}
			return ctx.Err()
		}
	}
	for range partWindow {
		credits <- struct{}{}
	}
	return nil
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

// receiveParts assembles the blobs body announces (the payload, then each array's data)
// from the Parts next returns, in memory from alloc, granting credit for half a window
// at a time and for the rest at the end, so the sender knows when every Part is in.
func receiveParts(ctx context.Context, body *clusterv1.Body, next func(context.Context) (*clusterv1.Part, error), credit func(parts uint32), mem alloc) (out received, err error) {
	sizes := body.GetSizes()
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
	taken := uint32(0)
	i, at := 0, 0 // the blob being filled, and how much of it is
	for {
		for i < len(out.blobs) && at == len(out.blobs[i]) {
			i, at = i+1, 0
		}
		if i == len(out.blobs) {
			break
		}
		p, err := next(ctx)
		if err != nil {
			return out, err
		}
		data := p.GetData()
		for len(data) > 0 {
			for i < len(out.blobs) && at == len(out.blobs[i]) {
				i, at = i+1, 0
			}
			if i == len(out.blobs) {
				return out, fmt.Errorf("parts overrun the %d blobs announced", len(sizes))
			}
			n := copy(out.blobs[i][at:], data)
			at, data = at+n, data[n:]
		}
		if taken++; taken == partWindow/2 {
			credit(taken)
			taken = 0
		}
	}
	if taken > 0 {
		credit(taken)
	}
	return out, nil
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

// credits is a full window of credits for sending Parts.
func credits() chan struct{} {
	c := make(chan struct{}, partWindow)
	for range partWindow {
		c <- struct{}{}
	}
	return c
}

// grant adds n credits to c, ignoring any beyond the window.
func grant(c chan struct{}, n uint32) {
	for range n {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
