package reference

import (
	"context"
	"fmt"
	"sync"

	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/telemetry"
)

// Channel is the cheapest Go client of a worker's Channel: a generated stream, one call
// frame out and one answer in per call, nothing of pyvisor's runtime around it. Calls are
// sequential (one at a time under a lock).
type Channel struct {
	mu     sync.Mutex
	stream workerv1.WorkerService_ChannelClient
	cancel context.CancelFunc
	next   uint64
}

// OpenChannel opens a Channel of its own to the worker behind c.
func OpenChannel(c workerv1.WorkerServiceClient) (*Channel, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Channel(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open channel: %w", err)
	}
	return &Channel{stream: stream, cancel: cancel}, nil
}

// Echo calls echo with EchoArgs and a new correlation id, as the runtime sends a call.
func (ch *Channel) Echo(ctx context.Context) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.next++
	req := &workerv1.ExecuteRequest{Tool: "echo", Arguments: EchoArgs, CorrelationId: telemetry.NewCorrelationID()}
	if err := ch.stream.Send(&workerv1.HostFrame{CallId: ch.next, Body: &workerv1.HostFrame_Call{Call: &workerv1.Call{Request: req}}}); err != nil {
		return err
	}
	f, err := ch.stream.Recv()
	if err != nil {
		return err
	}
	if f.GetCallId() != ch.next || f.GetResult() == nil {
		return fmt.Errorf("echo failed: %v", f)
	}
	return nil
}

// Close ends the stream.
func (ch *Channel) Close() { ch.cancel() }
