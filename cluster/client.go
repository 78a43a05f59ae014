package cluster

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/lifecycle"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/telemetry"
	"github.com/pyvisor/pyvisor/telemetry/otelactor"
)

// Execute runs call in pool on the node route picks: this one (through local) or
// another, and says where it ran: "node/worker". A node lost mid-call is ErrNodeLost, after one retry on another node for an
// idempotent call; a node that was draining is skipped for another.
func (n *Node) Execute(ctx context.Context, pool string, call messages.Call) (bridge.Result, string, error) {
	avoid := map[string]error{}
	retried := false
	for {
		t, err := n.route(pool, call.SessionID, avoid)
		if err != nil {
			return bridge.Result{}, "", err
		}
		if t.self {
			done := n.out.local(n.addr)
			res, worker, err := n.local.Execute(ctx, pool, call)
			done()
			if worker != "" {
				worker = n.name + "/" + worker
			}
			return res, worker, err
		}
		res, worker, err := n.executeOn(ctx, t, pool, call)
		switch {
		case errors.Is(err, ErrDraining):
		case errors.Is(err, ErrNodeLost) && call.Idempotent && !retried && ctx.Err() == nil:
			retried = true
		default:
			return res, worker, err
		}
		avoid[t.addr] = err
	}
}

// Stream runs a streaming call in pool like Execute. A node lost before the first chunk
// is retried as Execute does; after it, the stream ends with ErrNodeLost.
func (n *Node) Stream(ctx context.Context, pool string, call messages.Call) iter.Seq2[bridge.Result, error] {
	return func(yield func(bridge.Result, error) bool) {
		avoid := map[string]error{}
		retried := false
		for {
			t, err := n.route(pool, call.SessionID, avoid)
			if err != nil {
				yield(bridge.Result{}, err)
				return
			}
			if t.self {
				done := n.out.local(n.addr)
				defer done()
				for res, err := range n.local.Stream(ctx, pool, call) {
					if !yield(res, err) {
						return
					}
				}
				return
			}
			chunks := 0
			var failed error
			for res, err := range n.streamOn(ctx, t, pool, call) {
				if err != nil {
					failed = err
					break
				}
				chunks++
				if !yield(res, nil) {
					return
				}
			}
			switch {
			case failed == nil:
				return
			case chunks == 0 && errors.Is(failed, ErrDraining):
			case chunks == 0 && errors.Is(failed, ErrNodeLost) && call.Idempotent && !retried && ctx.Err() == nil:
				retried = true
			default:
				yield(bridge.Result{}, failed)
				return
			}
			avoid[t.addr] = failed
		}
	}
}

// executeOn sends a call to the gateway of node t and waits for its result, the node's
// loss, or ctx (then it cancels the call there).
func (n *Node) executeOn(ctx context.Context, t target, pool string, call messages.Call) (res bridge.Result, worker string, err error) {
	ctx, p, done := n.send(ctx, t, pool, call, false)
	defer func() { done(err) }()
	select {
	case v := <-p.ch:
		if f, ok := v.(bodyFailed); ok {
			n.cancel(t, p)
			return bridge.Result{}, "", f.err
		}
		r, ok := v.(*clusterv1.Result)
		if !ok {
			return bridge.Result{}, "", fmt.Errorf("node %s: unexpected reply %T", t.name, v)
		}
		if err := decodeError(t.name, telemetry.CorrelationID(ctx), r.GetError()); err != nil {
			return bridge.Result{}, "", err
		}
		node := r.GetNode() // its own name, known before its gossip reaches this node
		if node == "" {
			node = t.name
		}
		res, err := n.received(ctx, t, p, r.GetJson(), r.GetPayload(), r.GetArrays(), r.GetBody())
		if err != nil {
			n.cancel(t, p)
			return bridge.Result{}, "", err
		}
		return res, node + "/" + r.GetWorker(), nil
	case <-p.lost:
		n.cancel(t, p) // best effort: if the connection comes back, the node frees the worker
		return bridge.Result{}, "", p.lostErr(t)
	case <-ctx.Done():
		n.cancel(t, p)
		return bridge.Result{}, "", ctx.Err()
	}
}

// streamOn sends a streaming call to node t and yields its chunks; every half window
// consumed, it grants the node that many more.
func (n *Node) streamOn(ctx context.Context, t target, pool string, call messages.Call) iter.Seq2[bridge.Result, error] {
	return func(yield func(bridge.Result, error) bool) {
		var err error
		ctx, p, done := n.send(ctx, t, pool, call, true)
		defer func() { done(err) }()
		half := uint32(max(n.cfg.StreamWindow/2, 1))
		var taken uint32
		for {
			select {
			case v := <-p.ch:
				switch r := v.(type) {
				case bodyFailed:
					n.cancel(t, p)
					err = r.err
					yield(bridge.Result{}, err)
					return
				case *clusterv1.Chunk:
					res, err := n.received(ctx, t, p, r.GetJson(), r.GetPayload(), r.GetArrays(), r.GetBody())
					if err != nil {
						n.cancel(t, p)
						yield(bridge.Result{}, err)
						return
					}
					if !yield(res, nil) {
						n.cancel(t, p)
						return
					}
					if taken++; taken == half {
						n.system.Root.Send(gatewayPID(t.addr), &actor.MessageEnvelope{Message: &clusterv1.Credit{Id: p.id, Chunks: taken}, Sender: p.pid})
						taken = 0
					}
				case *clusterv1.Result:
					if err = decodeError(t.name, telemetry.CorrelationID(ctx), r.GetError()); err != nil {
						yield(bridge.Result{}, err)
					}
					return
				}
			case <-p.lost:
				n.cancel(t, p)
				err = p.lostErr(t)
				yield(bridge.Result{}, err)
				return
			case <-ctx.Done():
				n.cancel(t, p)
				err = ctx.Err()
				yield(bridge.Result{}, err)
				return
			}
		}
	}
}

// send opens a pending call and sends it to t's gateway, in an envelope carrying ctx's
// correlation id and trace context under a CLIENT span "remote <tool>". done closes the
// call and its span, and reports it to the observer.
func (n *Node) send(ctx context.Context, t target, pool string, call messages.Call, stream bool) (context.Context, *pending, func(error)) {
	began := time.Now()
	ctx, span := n.tracer.Start(ctx, "remote "+call.Tool, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("pyvisor.pool", pool), attribute.String("pyvisor.tool", call.Tool),
			attribute.String("pyvisor.node", n.name), attribute.String("pyvisor.peer", t.name),
			attribute.String("server.address", t.addr), attribute.String("pyvisor.correlation_id", telemetry.CorrelationID(ctx)))
	}
	p := n.out.open(n, t.addr, stream)
	out := n.split(call.Payload, call.Arrays)
	msg := &clusterv1.Call{Id: p.id, Pool: pool, Tool: call.Tool, Args: call.Args, Payload: out.payload, Metadata: call.Metadata,
		SessionId: call.SessionID, Idempotent: call.Idempotent, Stream: stream, Caller: n.name, Window: uint32(n.cfg.StreamWindow),
		Arrays: out.arrays, Body: out.body}
	if d, ok := ctx.Deadline(); ok {
		msg.DeadlineUnixNano = d.UnixNano()
	}
	n.system.Root.Send(gatewayPID(t.addr), &actor.MessageEnvelope{
		Header:  otelactor.Inject(ctx, n.o.prop, telemetry.CorrelationID(ctx), true),
		Message: msg,
		Sender:  p.pid,
	})
	bodyCtx, stopBody := context.WithCancel(ctx)
	bodySent := make(chan struct{})
	if out.body == nil {
		close(bodySent)
	} else {
		go func() {
			defer close(bodySent)
			err := n.sendBody(bodyCtx, t.addr, out)
			if err != nil && bodyCtx.Err() == nil {
				p.SendUserMessage(nil, bodyFailed{err}) // the call fails with it at once
			}
		}()
	}
	return ctx, p, func(err error) {
		stopBody()
		<-bodySent // nothing reads the call's bytes once it returns
		n.out.close(n, p)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		took := time.Since(began)
		if n.debug() {
			log := telemetry.CallLogger(ctx, n.o.log)
			log.Debug().Err(err).Str("pool", pool).Str("tool", call.Tool).Str("peer", t.name).Dur("took", took).Msg("remote call sent")
		}
		n.o.observe(pool, t.name, "out", took, err)
	}
}

// cancel tells t's gateway the caller gave up on p.
func (n *Node) cancel(t target, p *pending) {
	n.system.Root.Send(gatewayPID(t.addr), &actor.MessageEnvelope{Message: &clusterv1.Cancel{Id: p.id}, Sender: p.pid})
}

func gatewayPID(addr string) *actor.PID { return actor.NewPID(addr, gatewayName) }

// bodyFailed is what a call's bulk stream failed with: the call fails with it.
type bodyFailed struct{ err error }

// pending is a call this node sent, waiting for what comes back: its reply process
// (the envelope's sender) puts the node's Chunks and Result on ch; lost is closed if the
// node is lost first.
type pending struct {
	id   string
	addr string
	pid  *actor.PID
	ch   chan any
	lost chan struct{}
	why  error
}

func (p *pending) lostErr(t target) error {
	if errors.Is(p.why, ErrNodeLost) {
		return fmt.Errorf("node %s (%s): %w", t.name, t.addr, ErrNodeLost)
	}
	return fmt.Errorf("call to node %s: this node is stopping: %w", t.name, p.why)
}

// SendUserMessage takes what the hosting node sends back.
func (p *pending) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	select {
	case p.ch <- msg:
	default: // over the window: the host broke the protocol; the call ends on its result or deadline
	}
}

func (p *pending) SendSystemMessage(*actor.PID, any) {}
func (p *pending) Stop(*actor.PID)                   {}

// outgoing are the calls this node sent and waits for, by id.
type outgoing struct {
	mu     sync.Mutex
	calls  map[string]*pending
	byAddr map[string]int // calls waiting, by the address of the node running them (this one's too)
	idle   idle
	left   bool // this node left the cluster: no more calls
}

// open registers a call to addr: a stream's reply process takes up to window chunks
// ahead, a plain call's one result. Once this node has left (lose("")), the call is
// born lost, with ErrStopped.
func (o *outgoing) open(n *Node, addr string, stream bool) *pending {
	size := 3 // a result, and room for a bodyFailed
	if stream {
		size += n.cfg.StreamWindow
	}
	// The id names this start of the node too: the node it goes to keys the call by it
	// (with this node's address), so a restarted caller's calls never meet the old ones.
	p := &pending{id: n.instance + "-" + strconv.FormatUint(n.seq.Add(1), 36), addr: addr, ch: make(chan any, size), lost: make(chan struct{})}
	p.pid, _ = n.system.ProcessRegistry.Add(p, "pyvisor-call-"+p.id)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.left {
		p.why = lifecycle.ErrStopped
		close(p.lost)
		return p
	}
	if o.byAddr == nil {
		o.byAddr = map[string]int{}
	}
	o.calls[p.id] = p
	o.byAddr[addr]++
	return p
}

// local counts a call this node runs itself, in its routing's view of its own load,
// until the returned func is called.
func (o *outgoing) local(addr string) func() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byAddr == nil {
		o.byAddr = map[string]int{}
	}
	o.byAddr[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.byAddr[addr]--
		})
	}
}

func (o *outgoing) close(n *Node, p *pending) {
	n.system.ProcessRegistry.Remove(p.pid)
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.calls[p.id]; ok {
		delete(o.calls, p.id)
		o.byAddr[p.addr]--
	}
	if len(o.calls) == 0 {
		o.idle.emptied()
	}
}

// wait returns once no call waits, or ctx ends.
func (o *outgoing) wait(ctx context.Context) {
	o.idle.wait(ctx, &o.mu, func() int { return len(o.calls) })
}

// inflight is how many calls sent to addr are waiting.
func (o *outgoing) inflight(addr string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byAddr[addr]
}

// lose ends the calls waiting on addr ("": all, as this node leaves) with why, and
// says how many.
func (o *outgoing) lose(addr string, why error) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if addr == "" {
		o.left = true
	}
	n := 0
	for id, p := range o.calls {
		if addr != "" && p.addr != addr {
			continue
		}
		p.why = why
		close(p.lost)
		delete(o.calls, id)
		o.byAddr[p.addr]--
		n++
	}
	return n
}

// received is a result or chunk that came back: its bytes inline, or assembled from the
// bulk stream that follows it.
func (n *Node) received(ctx context.Context, t target, p *pending, json, payload []byte, wire []*workerv1.Array, body *clusterv1.Body) (bridge.Result, error) {
	var in received
	if body != nil {
		var err error
		if in, err = n.receive(ctx, body, len(wire), heap, p.lost, func() error { return p.lostErr(t) }); err != nil {
			return bridge.Result{}, fmt.Errorf("node %s: %w", t.name, err)
		}
	}
	arrays, err := in.arrays(wire)
	if err != nil {
		return bridge.Result{}, fmt.Errorf("node %s: %w", t.name, err)
	}
	return bridge.NewResult(json, in.payload(payload), arrays, nil), nil
}
