package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
	"github.com/pyvisor/pyvisor/nd"
)

func TestSmallBytesStayInline(t *testing.T) {
	x, _ := nd.Of([]float64{1, 2})
	out := split([]byte("hi"), map[string]nd.Array{"x": x})
	if out.body != nil || string(out.payload) != "hi" || len(out.arrays) != 1 || len(out.arrays[0].GetData()) != 16 {
		t.Fatalf("got %+v", out)
	}
}

// Parts go from sendParts to receiveParts with the credit they exchange; never more than
// a window of them in flight.
func TestLargeBytesCrossInPartsUnderCredit(t *testing.T) {
	payload := bytes.Repeat([]byte{7}, 3*partSize+5)
	values := make([]int32, partSize) // 4 parts
	for i := range values {
		values[i] = int32(i)
	}
	x, _ := nd.Of(values)
	out := split(payload, map[string]nd.Array{"x": x})
	if out.body == nil || len(out.payload) != 0 || len(out.arrays[0].GetData()) != 0 {
		t.Fatal("large bytes should leave the message")
	}
	wire := make(chan *clusterv1.Part, 2*partWindow)
	credit := credits()
	inFlight, most := 0, 0
	ctx := context.Background()
	go func() {
		_ = sendParts(ctx, "id", out.blobs, credit, func(p *clusterv1.Part) {
			wire <- p
		})
	}()
	next := func(ctx context.Context) (*clusterv1.Part, error) {
		p := <-wire
		inFlight = len(wire) + 1
		most = max(most, inFlight)
		return p, nil
	}
	in, err := receiveParts(ctx, out.body, next, func(n uint32) { grant(credit, n) }, heap)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in.payload(nil), payload) || !bytes.Equal(in.blobs[1], x.Data) {
		t.Fatal("bytes differ")
	}
	if most > partWindow {
		t.Fatalf("%d parts in flight, over the window of %d", most, partWindow)
	}
	arrays, err := in.arrays(out.arrays)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := nd.Values[int32](arrays["x"])
	if back[partSize-1] != int32(partSize-1) {
		t.Fatal("array differs")
	}
}

func TestAReceiverRefusesWhatItWouldNotAllocateOrWhatOverruns(t *testing.T) {
	next := func(context.Context) (*clusterv1.Part, error) { return &clusterv1.Part{Data: make([]byte, 10)}, nil }
	_, err := receiveParts(context.Background(), &clusterv1.Body{Sizes: []uint64{maxBlob + 1}}, next, func(uint32) {}, heap)
	if !errors.Is(err, bridge.ErrMessageTooLarge) {
		t.Fatalf("want ErrMessageTooLarge, got %v", err)
	}
	_, err = receiveParts(context.Background(), &clusterv1.Body{Sizes: []uint64{5}}, next, func(uint32) {}, heap)
	if err == nil {
		t.Fatal("a part past the announced bytes must fail")
	}
}

func TestSendingStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := sendParts(ctx, "id", [][]byte{make([]byte, 2*partSize)}, make(chan struct{}), func(*clusterv1.Part) {})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestTheWindowServesTheNextMessageOnceAllPartsAreIn(t *testing.T) {
	credit := credits()
	wire := make(chan *clusterv1.Part, 2*partWindow)
	next := func(context.Context) (*clusterv1.Part, error) { return <-wire, nil }
	for range 3 { // three messages in a row, as a stream's chunks
		blobs := [][]byte{make([]byte, 2*partSize+1)}
		sent := make(chan error, 1)
		go func() {
			sent <- sendParts(context.Background(), "id", blobs, credit, func(p *clusterv1.Part) { wire <- p })
		}()
		if _, err := receiveParts(context.Background(), &clusterv1.Body{Sizes: []uint64{2*partSize + 1}}, next,
			func(n uint32) { grant(credit, n) }, heap); err != nil {
			t.Fatal(err)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if len(credit) != partWindow {
			t.Fatalf("%d credits left after a message, want the whole window of %d", len(credit), partWindow)
		}
	}
}
