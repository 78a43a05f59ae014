package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
	"github.com/pyvisor/pyvisor/nd"
	"github.com/pyvisor/pyvisor/shm"
	"github.com/pyvisor/pyvisor/telemetry"
	"github.com/pyvisor/pyvisor/telemetry/otelactor"
)

// gateway is the actor other nodes send their calls to. It runs each call on a
// goroutine of its own (in the node's local pools) and only routes Cancel and Credit to
// the calls it runs, so its mailbox never waits on a call.
type gateway struct{ node *Node }

func (g *gateway) Receive(c actor.Context) {
	sender := c.Sender()
	if sender == nil {
		return
	}
	switch m := c.Message().(type) {
	case *clusterv1.Call:
		g.node.serve(sender, c.MessageHeader(), m)
	case *clusterv1.Cancel:
		g.node.in.cancel(key(sender))
	case *clusterv1.Credit:
		g.node.in.credit(key(sender), m.GetChunks())
	case *clusterv1.Ping:
		c.Send(sender, &clusterv1.Pong{Node: g.node.name})
	}
}

// key names a call this node runs: its caller's reply process.
func key(sender *actor.PID) string { return sender.GetAddress() + "/" + sender.GetId() }

// serve runs a call another node sent, under a SERVER span "remote <tool>" whose parent
// is the caller's span (from the envelope's headers), with the caller's correlation id
// and deadline, and sends what comes of it back to the caller's reply process.
func (n *Node) serve(sender *actor.PID, header actor.ReadonlyMessageHeader, m *clusterv1.Call) {
	reply := func(msg any) { n.system.Root.Send(sender, msg) }
	if !n.hosted[m.GetPool()] { // a pool this node does not offer, even if it runs one of the name
		reply(&clusterv1.Result{Id: m.GetId(), Node: n.name, Error: encodeError(fmt.Errorf("%w %q: node %s does not host it", actors.ErrUnknownPool, m.GetPool(), n.name))})
		return
	}
	carrier := otelactor.Carrier{}
	if header != nil {
		carrier = otelactor.Carrier(header.ToMap())
	}
	ctx := context.Background()
	if n.o.prop != nil {
		ctx = n.o.prop.Extract(ctx, carrier)
	}
	cid := carrier.Get(messages.HeaderCorrelationID)
	ctx = telemetry.WithCorrelationID(ctx, cid)
	cancel := context.CancelFunc(func() {})
	if d := m.GetDeadlineUnixNano(); d != 0 {
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, d))
	}
	ctx, cancelAll := context.WithCancel(ctx)
	s := n.in.add(key(sender), sender.GetAddress(), cancelAll, int(min(m.GetWindow(), maxWindow)))
	// Checked after the call is counted: Stop sets draining, then waits for the calls
	// counted, so a call is either refused here or waited for.
	if n.draining.Load() {
		n.in.remove(s)
		cancel()
		reply(&clusterv1.Result{Id: m.GetId(), Node: n.name, Error: encodeError(ErrDraining)})
		return
	}
	call := messages.Call{Tool: m.GetTool(), Args: m.GetArgs(), Payload: m.GetPayload(), Metadata: m.GetMetadata(),
		SessionID: m.GetSessionId(), Idempotent: m.GetIdempotent()}
	go func() {
		began := time.Now()
		defer cancel()
		defer n.in.remove(s)
		in, err := n.takeBytes(ctx, m, &call, n.sharedAlloc(m.GetPool()))
		if err != nil {
			reply(&clusterv1.Result{Id: m.GetId(), Node: n.name, Error: encodeError(err)})
			n.o.observe(m.GetPool(), m.GetCaller(), "in", time.Since(began), err)
			return
		}
		defer in.release() // the call holds what it still needs
		call.View = true   // results are sent from where they lie, then released
		ctx, span := n.tracer.Start(ctx, "remote "+call.Tool, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		if span.IsRecording() {
			span.SetAttributes(attribute.String("pyvisor.pool", m.GetPool()), attribute.String("pyvisor.tool", call.Tool),
				attribute.String("pyvisor.node", n.name), attribute.String("pyvisor.peer", m.GetCaller()),
				attribute.String("pyvisor.correlation_id", cid))
		}
		if n.debug() {
			log := telemetry.CallLogger(ctx, n.o.log)
			log.Debug().Str("pool", m.GetPool()).Str("tool", call.Tool).Str("peer", m.GetCaller()).Msg("remote call received")
		}
		if m.GetStream() {
			err = n.serveStream(ctx, s, m, call, reply)
		} else {
			var res bridge.Result
			var worker string
			res, worker, err = n.local.Execute(ctx, m.GetPool(), call)
			perr := n.sendResult(ctx, s.caller, res, func(out outBody) {
				reply(&clusterv1.Result{Id: m.GetId(), Node: n.name, Json: res.JSON, Payload: out.payload, Arrays: out.arrays, Body: out.body,
					Worker: worker, Error: encodeError(err)})
			})
			if perr != nil && err == nil {
				err = perr // the caller gave up mid-transfer
			}
		}
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		n.o.observe(m.GetPool(), m.GetCaller(), "in", time.Since(began), err)
	}()
}

// serveStream sends a stream's chunks as the caller's credits allow, then its end.
func (n *Node) serveStream(ctx context.Context, s *served, m *clusterv1.Call, call messages.Call, reply func(any)) error {
	var failed error
	for res, err := range n.local.Stream(ctx, m.GetPool(), call) {
		if err != nil {
			failed = err
			break
		}
		select {
		case <-s.credits:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			res.Release()
			failed = ctx.Err()
			break
		}
		err = n.sendResult(ctx, s.caller, res, func(out outBody) {
			reply(&clusterv1.Chunk{Id: m.GetId(), Json: res.JSON, Payload: out.payload, Arrays: out.arrays, Body: out.body})
		})
		if err != nil {
			failed = err
			break
		}
	}
	reply(&clusterv1.Result{Id: m.GetId(), Node: n.name, Error: encodeError(failed)})
	return failed
}

// sendResult sends a result or chunk the local pool returned as a view of the worker's
// memory: head sends its message (bytes inline, copied out first, since the message is
// serialized later), then its bytes follow on a bulk stream; the view is released once
// nothing reads it any more (never, if gRPC still held it: errBytesHeld).
func (n *Node) sendResult(ctx context.Context, caller string, res bridge.Result, head func(outBody)) error {
	out := n.split(res.Payload, res.Arrays)
	if out.body == nil {
		out.detach()
	}
	head(out)
	err := n.sendBody(ctx, caller, out)
	if !errors.Is(err, errBytesHeld) {
		res.Release()
	}
	return err
}

// maxWindow bounds the chunks a caller may ask to have sent ahead.
const maxWindow = 1024

// served is a call this node runs for another.
type served struct {
	key     string
	caller  string // the calling node's address
	cancel  context.CancelFunc
	credits chan struct{}
}

// takeBytes puts the call's payload and arrays into call: inline, or assembled from the
// bulk stream that follows the call, in memory from mem. The caller releases what it
// returns once the call is over.
func (n *Node) takeBytes(ctx context.Context, m *clusterv1.Call, call *messages.Call, mem alloc) (received, error) {
	var in received
	if body := m.GetBody(); body != nil {
		var err error
		if in, err = n.receive(ctx, body, len(m.GetArrays()), mem, nil, nil); err != nil {
			return received{}, err
		}
		call.Payload = in.payload(nil)
		if b, ok := in.owner.(messages.Buffer); ok {
			call.Payload, call.Buffer = nil, b // in place in the pool's shared memory
		}
	}
	arrays, err := in.arrays(m.GetArrays())
	if err != nil {
		in.release()
		return received{}, fmt.Errorf("%w: %w", bridge.ErrInvalidArgument, err)
	}
	call.Arrays = arrays
	return in, nil
}

// sharedAlloc assembles a call's bytes for pool in its shared memory where it has some,
// in one region taken at once, else on the Go heap.
func (n *Node) sharedAlloc(pool string) alloc {
	return func(ctx context.Context, sizes []uint64) ([][]byte, nd.Owner, error) {
		offsets, total := shm.Pack(sizes)
		region, owner, err := n.local.Alloc(ctx, pool, int(total))
		if err != nil && ctx.Err() != nil {
			return nil, nil, err
		}
		if region == nil { // no shared memory, or more than one region may hold
			return heap(ctx, sizes)
		}
		blobs := make([][]byte, len(sizes))
		for i, s := range sizes {
			blobs[i] = region[offsets[i] : offsets[i]+s : offsets[i]+s]
		}
		return blobs, owner, nil
	}
}

// incoming are the calls this node runs for others, by key.
type incoming struct {
	mu    sync.Mutex
	calls map[string]*served
	idle  idle
}

func (in *incoming) add(key, caller string, cancel context.CancelFunc, window int) *served {
	s := &served{key: key, caller: caller, cancel: cancel, credits: make(chan struct{}, max(window, 1))}
	for range max(window, 1) {
		s.credits <- struct{}{}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.calls[key] = s
	return s
}

func (in *incoming) remove(s *served) {
	s.cancel()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.calls[s.key] == s {
		delete(in.calls, s.key)
	}
	if len(in.calls) == 0 {
		in.idle.emptied()
	}
}

func (in *incoming) cancel(key string) {
	in.mu.Lock()
	s := in.calls[key]
	in.mu.Unlock()
	if s != nil {
		s.cancel()
	}
}

func (in *incoming) credit(key string, chunks uint32) {
	in.mu.Lock()
	s := in.calls[key]
	in.mu.Unlock()
	if s == nil {
		return
	}
	for range chunks {
		select {
		case s.credits <- struct{}{}:
		default: // more than the window: ignore the excess
		}
	}
}

// lose cancels the calls run for the node at addr, gone, and says how many.
func (in *incoming) lose(addr string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, s := range in.calls {
		if s.caller == addr {
			s.cancel()
			n++
		}
	}
	return n
}

func (in *incoming) cancelAll() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, s := range in.calls {
		s.cancel()
	}
}

// wait returns once no call runs, or ctx ends.
func (in *incoming) wait(ctx context.Context) {
	in.idle.wait(ctx, &in.mu, func() int { return len(in.calls) })
}
