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
func sendParts(ctx context.Context, id string, blobs [][]byte, credits <-chan struct{}, send func(*clusterv1.Part)) error {
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
	return nil
}

// receiveParts assembles the bytes body announces from the Parts next returns, granting
// credit for half a window at a time: the payload and each array's data.
func receiveParts(ctx context.Context, body *clusterv1.Body, next func(context.Context) (*clusterv1.Part, error), credit func(parts uint32)) (payload []byte, datas [][]byte, err error) {
	var total uint64
	for _, s := range body.GetSizes() {
		if s > maxBlob {
			return nil, nil, fmt.Errorf("%w: a blob of %d bytes announced, over %d", bridge.ErrMessageTooLarge, s, uint64(maxBlob))
		}
		total += s
	}
	buf := make([]byte, total)
	var got uint64
	taken := uint32(0)
	for got < total {
		p, err := next(ctx)
		if err != nil {
			return nil, nil, err
		}
		if uint64(len(p.GetData())) > total-got {
			return nil, nil, fmt.Errorf("parts overrun the %d bytes announced", total)
		}
		got += uint64(copy(buf[got:], p.GetData()))
		if taken++; taken == partWindow/2 && got < total {
			credit(taken)
			taken = 0
		}
	}
	sizes := body.GetSizes()
	if len(sizes) == 0 {
		return nil, nil, nil
	}
	payload, buf = buf[:sizes[0]:sizes[0]], buf[sizes[0]:]
	for _, s := range sizes[1:] {
		datas = append(datas, buf[:s:s])
		buf = buf[s:]
	}
	return payload, datas, nil
}

// inArrays are the arrays of a message that arrived, their data inline or assembled from
// Parts (datas, in order).
func inArrays(wire []*workerv1.Array, datas [][]byte) (map[string]nd.Array, error) {
	if len(wire) == 0 {
		return nil, nil
	}
	if datas != nil && len(datas) != len(wire) {
		return nil, fmt.Errorf("%d arrays but %d blobs", len(wire), len(datas))
	}
	out := make(map[string]nd.Array, len(wire))
	for i, w := range wire {
		data := w.GetData()
		if datas != nil {
			data = datas[i]
		}
		a, err := bridge.ArrayFromWire(w, data)
		if err != nil {
			return nil, err
		}
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
