package actors

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/telemetry"
	"github.com/pyvisor/pyvisor/telemetry/otelactor"
)

// grant is the pool's go-ahead for one call on a worker's process: the caller runs the
// gRPC call on its own goroutine, then tells the pool the slot is free. The call is the
// worker's all the same: a traced call is tracked on the process (a restart links to
// it), and it fails with the process. Its context has the pool's receive span (or the
// call's queue wait) as parent when the trace is sampled.
//
// Running the call where the caller already waits saves two goroutine hand-offs per
// call (to a runner and back), which on a small machine cost more than the mailboxes.
type grant struct {
	system  *actor.ActorSystem
	pool    *actor.PID
	proc    *live
	ctx     context.Context // the call's: see callContext
	cid     string          // correlation id
	slot    string
	inc     uint64
	session string
	untrack func()
	once    sync.Once
}

// finish frees the slot, once. A call its process died under stays tracked: the
// restart links to it.
func (g *grant) finish(err error) {
	g.once.Do(func() {
		if !errors.Is(err, bridge.ErrWorkerCrashed) {
			g.untrack()
		}
		if g.proc != nil {
			g.proc.end()
		}
		g.system.Root.Send(g.pool, &callFinished{slot: g.slot, inc: g.inc, session: g.session, failed: failed(err)})
	})
}

// failed says whether a call's outcome counts against the code that ran it (a canary's
// share): an error of the worker's, not the caller's giving up.
func failed(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// Caller sends calls to pools and runs what they grant. Stopped, when not nil, is
// closed once the pools have stopped: a call still waiting for its pool's answer then
// ends with ErrNoActor, since a pool that stops drops what is left in its mailbox.
type Caller struct {
	System     *actor.ActorSystem
	Propagator propagation.TextMapPropagator
	Stopped    <-chan struct{}
}

// Execute runs msg through the pool at pid: the pool picks a worker (or queues the
// call) and grants the call that worker's process, and the call runs on this
// goroutine. The reply is the pool's answer when it does not run the call (saturated,
// stopped, failed), else the call's result. An idempotent call whose worker dies
// mid-call is retried once, first in the queue, on another worker. ErrNoActor means
// the pool is gone.
func (c Caller) Execute(ctx context.Context, pid *actor.PID, msg *messages.Execute) (*messages.ExecuteResult, error) {
	front := false
	for {
		g, answer, err := c.granted(ctx, pid, msg, front)
		if g == nil {
			if err != nil {
				return nil, err
			}
			return result(msg, answer)
		}
		res, err := g.execute(msg.Call)
		if err != nil && msg.Call.Idempotent && msg.Attempt == 0 && errors.Is(err, bridge.ErrWorkerCrashed) {
			retry := *msg
			retry.Attempt++
			msg, front = &retry, true
			continue
		}
		return &messages.ExecuteResult{JSON: res.JSON, Payload: res.Payload, Arrays: res.Arrays, Err: err, Worker: g.slot, Version: g.proc.CodeVersion(), Release: res.Release}, nil
	}
}

// granted asks the pool for msg until it answers with a grant on a live process (g),
// or with anything else (answer), or ctx ends (err). A grant whose process has exited
// in the meantime (the pool hears of it a moment later) is given back and the call
// asked again, first in line: nothing of it reached Python.
func (c Caller) granted(ctx context.Context, pid *actor.PID, msg any, front bool) (*grant, any, error) {
	for {
		v, err := c.ask(ctx, pid, msg, front)
		if err != nil {
			return nil, nil, err
		}
		g, ok := v.(*grant)
		if !ok {
			return nil, v, nil
		}
		if !g.proc.gone() {
			return g, nil, nil
		}
		g.finish(nil)
		front = true
	}
}

// execute runs the granted call. The pool hears the worker is free before the caller
// hears back, so the caller's next call finds it free (session affinity relies on it):
// bridge.Client calls req.Over before it returns an answer.
//
// The slot is freed when the Python body is over, not when the caller returns: a call
// whose caller gave up keeps its slot until the worker reports its body over (or the
// worker is replaced for a body stuck past its cancel grace), so MaxConcurrent bounds
// the bodies running in Python.
func (g *grant) execute(call messages.Call) (res bridge.Result, err error) {
	req, err := g.proc.request(g.ctx, call, g.cid)
	if err != nil {
		g.finish(err)
		return bridge.Result{}, err
	}
	req.Over = g.finish
	return g.proc.Client().Execute(g.ctx, req)
}

// Stream runs msg through the pool at pid like Execute and yields the stream's chunks
// on this goroutine; the sequence ends after the last chunk or with one error.
// Stopping early cancels the call (msg.Ctx must be cancelled by the caller after it).
// The worker is free again as soon as the stream's Python body is over: once it ends,
// or once the call's context ends and the cancelled generator has closed, even while
// the consumer is still busy with a chunk.
func (c Caller) Stream(ctx context.Context, pid *actor.PID, msg *messages.ExecuteStream) iter.Seq2[bridge.Result, error] {
	return func(yield func(bridge.Result, error) bool) {
		g, answer, err := c.granted(ctx, pid, msg, false)
		if g == nil {
			if err == nil {
				var res *messages.ExecuteResult
				if res, err = result(msg, answer); err == nil {
					err = res.Err
				}
			}
			yield(bridge.Result{}, err)
			return
		}
		req, err := g.proc.request(g.ctx, msg.Call, g.cid)
		if err != nil {
			g.finish(err)
			yield(bridge.Result{}, err)
			return
		}
		req.Over = g.finish // before the last yield: as for Execute, the pool hears first
		for res, err := range g.proc.Client().ExecuteStream(g.ctx, req) {
			if !yield(res, err) || err != nil {
				return
			}
		}
	}
}

// callFields are what the actors read of a call message (Execute, ExecuteStream, or a
// retry): the caller's context, where the answer goes, and the call; zero for any other.
func callFields(msg any) (caller context.Context, reply messages.Replier, call messages.Call) {
	switch m := msg.(type) {
	case *messages.Execute:
		return m.Ctx, m.Reply, m.Call
	case *messages.ExecuteStream:
		return m.Ctx, m.Reply, m.Call
	case *redispatch:
		return callFields(m.msg)
	}
	return nil, nil, messages.Call{}
}

// callContext is the context of a call's gRPC call: the caller's deadline,
// cancellation, baggage and correlation id, with the span the pool's handling of the
// call ended in (its receive span, or its queue wait) as the parent when the trace is
// sampled. An unsampled call goes on in the caller's context, which holds the same
// (unsampled) trace.
//
// When the call is sampled, the correlation id also joins the baggage here, at the
// process boundary, so the Python side (and anything behind it that reads only
// baggage) sees it. It is not put in baggage earlier: encoding and parsing baggage at
// every mailbox hop cost more than all the rest of the tracing (the envelopes carry the
// id in their own header).
func callContext(spanCtx, caller context.Context, correlationID string) context.Context {
	if correlationID != "" && telemetry.CorrelationID(caller) != correlationID {
		caller = telemetry.WithCorrelationID(caller, correlationID)
	}
	span := trace.SpanFromContext(spanCtx)
	if !span.SpanContext().IsSampled() {
		return caller
	}
	return telemetry.WithCorrelationBaggage(trace.ContextWithSpan(caller, span))
}

// result reads a pool's answer to a call it did not grant.
func result(msg any, v any) (*messages.ExecuteResult, error) {
	switch r := v.(type) {
	case *messages.ExecuteResult:
		return r, nil
	case *actor.DeadLetterResponse:
		return nil, fmt.Errorf("%T: %w", msg, ErrNoActor)
	}
	return nil, fmt.Errorf("%T: unexpected reply %T", msg, v)
}

// ask sends a call to the pool, in an envelope like Request's, and waits for the
// pool's answer or its grant. With front, the call goes first in the pool's queue.
//
// If ctx ends first, a grant that still arrives is given back at once (the slot is
// freed, nothing runs), so a caller that gave up never holds a worker.
func (c Caller) ask(ctx context.Context, pid *actor.PID, msg any, front bool) (any, error) {
	a := &answer{ch: make(chan any, 1)}
	switch m := msg.(type) {
	case *messages.Execute:
		m.Reply = a
	case *messages.ExecuteStream:
		m.Reply = a
	}
	if front {
		msg = &redispatch{msg: msg}
	}
	c.System.Root.Send(pid, &actor.MessageEnvelope{Header: otelactor.Inject(ctx, c.Propagator, telemetry.CorrelationID(ctx), true), Message: msg})
	select {
	case v := <-a.ch:
		if _, dead := v.(*actor.DeadLetterResponse); dead {
			return nil, fmt.Errorf("%T to %s: %w", msg, pid.Id, ErrNoActor)
		}
		return v, nil
	case <-ctx.Done():
		a.abandon()
		return nil, ctx.Err()
	case <-c.Stopped:
		a.abandon()
		return nil, fmt.Errorf("%T to %s: the pools have stopped: %w", msg, pid.Id, ErrNoActor)
	}
}

// answer takes a call's first answer: the pool's, a worker's grant, or word that the
// pool is gone. Once its caller has gone it gives a grant back.
type answer struct {
	ch        chan any
	mu        sync.Mutex
	abandoned bool
}

func (a *answer) Reply(msg any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.abandoned {
		giveBack(msg)
		return
	}
	select {
	case a.ch <- msg:
	default: // answered already
	}
}

// abandon is called once the caller has gone: an answer already there, or one still
// to come, is given back.
func (a *answer) abandon() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.abandoned = true
	select {
	case msg := <-a.ch:
		giveBack(msg)
	default:
	}
}

func giveBack(msg any) {
	if g, ok := msg.(*grant); ok {
		g.finish(context.Canceled)
	}
}

// AnswerDeadLetters answers every call sent to a pool that is gone (the runtime is
// stopping) with ErrNoActor, so its caller does not wait for its deadline: calls carry
// a Replier, not a sender PID, so protoactor cannot answer them itself. Call the
// returned func to stop.
func AnswerDeadLetters(system *actor.ActorSystem) (stop func()) {
	sub := system.EventStream.Subscribe(func(evt any) {
		dl, ok := evt.(*actor.DeadLetterEvent)
		if !ok {
			return
		}
		if _, reply, _ := callFields(dl.Message); reply != nil {
			reply.Reply(&actor.DeadLetterResponse{})
		}
	})
	return func() { system.EventStream.Unsubscribe(sub) }
}
