package cluster

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
	"github.com/pyvisor/pyvisor/nd"
)

func TestSmallBytesStayInline(t *testing.T) {
	n := &Node{instance: "t"}
	x, _ := nd.Of([]float64{1, 2})
	out := n.split([]byte("hi"), map[string]nd.Array{"x": x})
	if out.body != nil || string(out.payload) != "hi" || len(out.arrays) != 1 || len(out.arrays[0].GetData()) != 16 {
		t.Fatalf("got %+v", out)
	}
}

// twoNodes are the bulk sides of two nodes: b receives on a gRPC server of its own (as
// on the remote's port), a sends.
func twoNodes(t *testing.T) (a, b *Node, addr string) {
	t.Helper()
	pool := &bufferPool{}
	a = &Node{instance: "a"}
	b = &Node{instance: "b"}
	a.bulk = bulk{dial: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, codec: codec{pool},
		conns: map[string]*grpc.ClientConn{}, meets: map[string]*meeting{}}
	b.bulk = bulk{codec: codec{pool}, conns: map[string]*grpc.ClientConn{}, meets: map[string]*meeting{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(b.bulk.serve), grpc.ForceServerCodecV2(codec{pool}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		a.bulk.close()
		srv.Stop()
	})
	return a, b, lis.Addr().String()
}

func TestLargeBytesCrossOnABulkStreamWhicheverArrivesFirst(t *testing.T) {
	a, b, addr := twoNodes(t)
	payload := bytes.Repeat([]byte{7}, 3*bulkChunk+5)
	values := make([]int32, bulkChunk) // 4 MiB
	for i := range values {
		values[i] = int32(i)
	}
	x, _ := nd.Of(values)
	for _, streamFirst := range []bool{false, true} {
		out := a.split(payload, map[string]nd.Array{"x": x})
		if out.body == nil || len(out.payload) != 0 || len(out.arrays[0].GetData()) != 0 {
			t.Fatal("large bytes should leave the message")
		}
		sent := make(chan error, 1)
		push := func() { sent <- a.sendBody(context.Background(), addr, out) }
		if streamFirst {
			go push()
			time.Sleep(50 * time.Millisecond) // the stream waits at the meeting
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got := make(chan received, 1)
		go func() {
			in, err := b.receive(ctx, out.body, len(out.arrays), heap, nil, nil)
			if err != nil {
				t.Error(err)
			}
			got <- in
		}()
		if !streamFirst {
			time.Sleep(50 * time.Millisecond)
			go push()
		}
		in := <-got
		cancel()
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(in.payload(nil), payload) {
			t.Fatal("payload differs")
		}
		arrays, err := in.arrays(out.arrays)
		if err != nil {
			t.Fatal(err)
		}
		back, _ := nd.Values[int32](arrays["x"])
		if back[bulkChunk-1] != int32(bulkChunk-1) {
			t.Fatal("array differs")
		}
		if len(b.bulk.meets) != 0 {
			t.Fatalf("%d meetings left behind", len(b.bulk.meets))
		}
	}
}

func TestAReceiverThatLeavesIsNeverWrittenToAfter(t *testing.T) {
	a, b, addr := twoNodes(t)
	out := a.split(make([]byte, 64*bulkChunk), nil)
	ctx, cancel := context.WithCancel(context.Background())
	dst := make([]byte, 64*bulkChunk)
	done := make(chan error, 1)
	go func() {
		done <- b.bulk.take(ctx, out.body.GetKey(), [][]byte{dst}, nil, nil)
	}()
	sent := make(chan error, 1)
	go func() { sent <- a.sendBody(context.Background(), addr, out) }()
	time.Sleep(5 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	snapshot := bytes.Clone(dst)
	<-sent // finishes, one way or the other
	if !bytes.Equal(snapshot, dst) {
		t.Fatal("the stream wrote to memory its receiver had left")
	}
}

func TestAReceiverRefusesWhatItWouldNotAllocateOrWhatOverruns(t *testing.T) {
	a, b, addr := twoNodes(t)
	_, err := b.receive(context.Background(), &clusterv1.Body{Sizes: []uint64{maxBody / 2, maxBody/2 + 1}}, 1, heap, nil, nil)
	if !errors.Is(err, bridge.ErrMessageTooLarge) {
		t.Fatalf("want ErrMessageTooLarge, got %v", err)
	}
	if _, err = b.receive(context.Background(), &clusterv1.Body{Sizes: []uint64{1, 2, 3}}, 1, heap, nil, nil); err == nil {
		t.Fatal("a body announcing more blobs than the message has arrays must fail")
	}
	out := a.split(make([]byte, 2*bulkChunk), nil)
	short := &clusterv1.Body{Sizes: []uint64{bulkChunk}, Key: out.body.GetKey()}
	go func() { _ = a.sendBody(context.Background(), addr, out) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.receive(ctx, short, 0, heap, nil, nil); err == nil || ctx.Err() != nil {
		t.Fatalf("a stream past the announced bytes must fail at once, got %v", err)
	}
}
