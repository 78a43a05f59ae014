package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// streamWindow is how many chunks a streaming call may have in flight before the worker
// waits for credit: enough to keep a fast consumer busy, small enough that one slow
// consumer never fills the channel for the other calls.
const streamWindow = 32

// frameSlack is the room gRPC's own message limit leaves on top of MaxMessageBytes for
// what a frame holds besides the tool's data (the pyvisor checks come first, so an
// oversize call fails alone and never breaks the channel).
const frameSlack = 1 << 20

// outQueue is how many frames may wait for the writer; callers wait (to their
// deadline) behind a full queue.
const outQueue = 256

// channel is a worker process's Channel stream: the calls of that process, multiplexed
// by call id. One goroutine reads, one writes (see out). Every call stays registered
// until the worker's terminal frame for it says its body is over, even after its caller
// has gone, so Running counts the Python bodies really running.
type channel struct {
	stream   workerv1.WorkerService_ChannelClient
	maxBytes int

	// out feeds the writer goroutine, the one caller of stream.Send: a Send can block on
	// flow control for as long as the worker does not read (stopped, or its loop wedged),
	// and a caller must still be able to leave at its own deadline.
	out    chan *workerv1.HostFrame
	nextID atomic.Uint64

	server *callbackServer // runs the tools' callbacks into Go
	client *Client         // whose arenas hold the callbacks' arrays

	mu        sync.Mutex
	calls     map[uint64]*pending
	callbacks map[uint64]*runningCallback // by callback id
	pings     map[uint64]chan *workerv1.HeartbeatResponse
	broken    chan struct{} // closed once the stream has failed
	err       error         // why; set before broken closes
}

// runningCallback is a Go callback running for a call's tool.
type runningCallback struct {
	call   uint64
	cancel context.CancelCauseFunc
}

// pending is one call on the channel.
type pending struct {
	frames chan *workerv1.WorkerFrame // buffered: the reader never blocks on a caller
	tool   string
	ctx    context.Context // the call's: its callbacks run under it
	cid    string          // the call's correlation id
	// Set under the channel's lock once the host has told the worker to cancel the call:
	// its callbacks' replies are moot from then on.
	cancelled bool
	// Set under the channel's lock once the caller has gone (abandon): the reader then
	// calls over itself when the body is over.
	abandoned bool
	over      func(error)
	stuck     *time.Timer // fires if the body outlives the cancel grace
	// holds free what the call's callbacks returned in shared memory: run once its body
	// is over (or the channel breaks), since the tool may read them until then.
	holds []func()
}

// unhold runs and forgets p's holds. Called with the channel's lock held.
func (p *pending) unhold() (run func()) {
	holds := p.holds
	p.holds = nil
	return func() {
		for _, h := range holds {
			h()
		}
	}
}

func newChannel(stream workerv1.WorkerService_ChannelClient, maxBytes int, server *callbackServer) *channel {
	return &channel{
		stream:    stream,
		maxBytes:  maxBytes,
		server:    server,
		out:       make(chan *workerv1.HostFrame, outQueue),
		calls:     map[uint64]*pending{},
		callbacks: map[uint64]*runningCallback{},
		pings:     map[uint64]chan *workerv1.HeartbeatResponse{},
		broken:    make(chan struct{}),
	}
}

// read delivers frames until the stream fails; it then fails the channel with the error
// (io.EOF when the worker ended the stream).
func (ch *channel) read() error {
	for {
		f, err := ch.stream.Recv()
		if err != nil {
			ch.fail(err)
			return err
		}
		if pong := f.GetPong(); pong != nil {
			ch.mu.Lock()
			w := ch.pings[pong.GetSequence()]
			delete(ch.pings, pong.GetSequence())
			ch.mu.Unlock()
			if w != nil {
				w <- pong
			}
			continue
		}
		switch b := f.GetBody().(type) {
		case *workerv1.WorkerFrame_Callback:
			ch.startCallback(f.GetCallId(), b.Callback)
			continue
		case *workerv1.WorkerFrame_CallbackCancel:
			ch.mu.Lock()
			if cb := ch.callbacks[b.CallbackCancel.GetCallbackId()]; cb != nil {
				cb.cancel(errCallbackWithdrawn)
			}
			ch.mu.Unlock()
			continue
		}
		ch.mu.Lock()
		p := ch.calls[f.GetCallId()]
		var over func(error)
		switch {
		case p == nil || p.abandoned:
			// Nobody reads this call's frames any more (or never did): what they hold
			// in the output arena goes back at once.
			ch.releaseRefs(f)
		default:
			// Delivered under the lock, so abandon's drain sees every frame delivered
			// before it. The buffer holds a stream's window and its end: a worker past
			// its credit loses the extra frames.
			select {
			case p.frames <- f:
			default:
				ch.releaseRefs(f)
			}
		}
		var unhold func()
		if p != nil && terminal(f) {
			delete(ch.calls, f.GetCallId())
			ch.endCallbacks(f.GetCallId(), errCallOver)
			if p.abandoned {
				over = p.over
			}
			if len(p.holds) > 0 {
				unhold = p.unhold()
			}
		}
		ch.mu.Unlock()
		if unhold != nil {
			unhold()
		}
		if over != nil { // its caller has gone; the body is over now
			p.stopStuck()
			over(context.Canceled)
		}
	}
}

func terminal(f *workerv1.WorkerFrame) bool {
	_, chunk := f.GetBody().(*workerv1.WorkerFrame_Chunk)
	return !chunk
}

func (ch *channel) fail(err error) {
	ch.mu.Lock()
	select {
	case <-ch.broken:
		ch.mu.Unlock()
		return
	default:
	}
	ch.err = err
	close(ch.broken)
	for _, cb := range ch.callbacks {
		cb.cancel(errCallbackChannelBroken)
	}
	// Calls whose callers have gone end with the channel: their bodies go with the
	// process, which is killed or stopping.
	var abandoned []*pending
	var unholds []func()
	for id, p := range ch.calls {
		unholds = append(unholds, p.unhold()) // the bodies are over with the channel
		if p.abandoned {
			abandoned = append(abandoned, p)
			delete(ch.calls, id)
		}
	}
	ch.mu.Unlock()
	for _, unhold := range unholds {
		unhold()
	}
	for _, p := range abandoned {
		p.stopStuck()
		p.over(ErrWorkerCrashed)
	}
}

// abandon hands the end of a call whose caller has gone to the reader: over is called
// once the worker says the body is over, or the channel breaks; at once if the body is
// over already. If the body is still running grace after this, stuck is called (once).
func (ch *channel) abandon(id uint64, p *pending, over func(error), err error, grace time.Duration, stuck func(tool string)) {
	ch.mu.Lock()
	select {
	case <-ch.broken: // no reader any more: the body went with the channel
		delete(ch.calls, id)
		ch.mu.Unlock()
		over(ErrWorkerCrashed)
		return
	default:
	}
	if _, running := ch.calls[id]; !running || p.abandoned {
		ch.mu.Unlock()
		if !running {
			// Answered meanwhile: its frame waits, unread, in p.frames.
			ch.drain(p)
			over(err)
		}
		return
	}
	p.abandoned = true
	p.over = over
	ch.drain(p)
	if stuck != nil && grace > 0 {
		p.stuck = time.AfterFunc(grace, func() {
			ch.mu.Lock()
			_, running := ch.calls[id]
			ch.mu.Unlock()
			if running {
				stuck(p.tool)
			}
		})
	}
	ch.mu.Unlock()
}

func (p *pending) stopStuck() {
	if p.stuck != nil {
		p.stuck.Stop()
	}
}

// Err is why the channel broke (nil while it serves).
func (ch *channel) Err() error {
	select {
	case <-ch.broken:
		return ch.err
	default:
		return nil
	}
}

// running is the number of calls whose Python body has not ended yet, as far as the
// host knows (answered calls and abandoned ones the worker has not reported over).
func (ch *channel) running() int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return len(ch.calls)
}

// send queues one frame for the writer, unless ctx ends or the channel breaks first.
func (ch *channel) send(ctx context.Context, f *workerv1.HostFrame) error {
	select {
	case ch.out <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-ch.broken:
		return errChannelBroken
	}
}

// write sends the queued frames in order until the channel breaks. A failed Send means
// the stream is gone: the reader sees it too and fails the channel.
func (ch *channel) write() {
	for {
		select {
		case f := <-ch.out:
			if ch.stream.Send(f) != nil {
				return
			}
		case <-ch.broken:
			return
		}
	}
}

// start registers a call and sends its frame. An oversize call fails here, alone; so
// does one whose ctx ends before its frame could be sent.
func (ch *channel) start(ctx context.Context, op string, call *workerv1.Call) (uint64, *pending, error) {
	req := call.GetRequest()
	if n := len(req.GetArguments()) + len(req.GetPayload()); n > ch.maxBytes {
		return 0, nil, tooLarge(op, req.GetTool(), fmt.Sprintf("arguments and payload are %d bytes, over the limit of %d bytes", n, ch.maxBytes))
	}
	id := ch.nextID.Add(1)
	f := &workerv1.HostFrame{CallId: id, Body: &workerv1.HostFrame_Call{Call: call}}
	if n := proto.Size(f); n > ch.maxBytes+frameSlack {
		return 0, nil, tooLarge(op, req.GetTool(), fmt.Sprintf("call is %d bytes with its metadata, over the limit of %d bytes", n, ch.maxBytes+frameSlack))
	}
	size := 1
	if call.GetStream() {
		size = int(call.GetCredit()) + 1
	}
	p := &pending{frames: make(chan *workerv1.WorkerFrame, size), tool: req.GetTool(), ctx: ctx, cid: req.GetCorrelationId()}
	ch.mu.Lock()
	if ch.Err() != nil {
		ch.mu.Unlock()
		return 0, nil, errChannelBroken
	}
	ch.calls[id] = p
	ch.mu.Unlock()
	if err := ch.send(ctx, f); err != nil {
		ch.forget(id)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return 0, nil, fmt.Errorf("%s %s: %w", op, req.GetTool(), ctxErr)
		}
		return 0, nil, err
	}
	return id, p, nil
}

func (ch *channel) forget(id uint64) {
	ch.mu.Lock()
	delete(ch.calls, id)
	ch.mu.Unlock()
}

// cancel tells the worker to cancel a call's body, from a goroutine of its own: the
// caller returns at once, even if the channel cannot take the frame yet. The call stays
// registered until the worker says the body is over.
func (ch *channel) cancel(id uint64, ctxErr error) {
	reason := workerv1.CancelReason_CANCEL_REASON_CANCELLED
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		reason = workerv1.CancelReason_CANCEL_REASON_DEADLINE_EXCEEDED
	}
	f := &workerv1.HostFrame{CallId: id, Body: &workerv1.HostFrame_Cancel{Cancel: &workerv1.Cancel{Reason: workerv1.Wire(reason)}}}
	ch.mu.Lock()
	if p := ch.calls[id]; p != nil {
		p.cancelled = true
	}
	ch.endCallbacks(id, errCallCancelled)
	ch.mu.Unlock()
	go func() { _ = ch.send(context.Background(), f) }() // ends when sent or the channel breaks
}

// startCallback runs a callback the call's tool made, on a goroutine of its own, and
// sends its reply. A callback of a call that is over, or whose caller has gone, is
// answered at once without running.
func (ch *channel) startCallback(callID uint64, msg *workerv1.Callback) {
	id := msg.GetCallbackId()
	ch.mu.Lock()
	p := ch.calls[callID]
	var refused *workerv1.CallbackReply
	switch {
	case p == nil:
		refused = callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_UNAVAILABLE, "the tool call that made the callback is over")
	case p.abandoned || p.cancelled:
		refused = callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_CANCELLED, "the tool call that made the callback was cancelled")
	case ch.callbacks[id] != nil:
		refused = callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_INVALID_ARGUMENT, fmt.Sprintf("callback id %d is in use", id))
	}
	if refused != nil {
		ch.mu.Unlock()
		ch.release(arrayRefs(msg.GetArrays(), nil)...) // its arrays are not read
		go ch.reply(callID, refused)
		return
	}
	ctx, cancel := context.WithCancelCause(p.ctx)
	ch.callbacks[id] = &runningCallback{call: callID, cancel: cancel}
	ch.mu.Unlock()
	go func() {
		arrays, release, err := ch.client.callbackArrays(msg)
		var reply *workerv1.CallbackReply
		held := func() {}
		if err != nil {
			reply = callbackFailed(msg, workerv1.GoErrorKind_GO_ERROR_KIND_INVALID_ARGUMENT, err.Error())
			ch.client.violation("callback", msg.GetName(), err)
		} else {
			if arrays != nil {
				ctx = context.WithValue(ctx, arraysKey{}, arrays)
			}
			reply, held = ch.server.serve(ctx, p.cid, msg)
		}
		release() // the argument arrays were views for the function's run only
		ch.mu.Lock()
		delete(ch.callbacks, id)
		moot := p.cancelled || p.ctx.Err() != nil
		broken := ch.err != nil // the holds went with the channel: hold nothing more
		if ch.calls[callID] == p && !moot && !broken {
			p.holds = append(p.holds, held) // freed once the call's body is over
			held = nil
		}
		ch.mu.Unlock()
		if held != nil {
			held()
		}
		cancel(nil)
		if moot {
			// The call itself has ended on this side (its deadline, its caller gone, a
			// stream's consumer stopped): the worker is told to cancel it, which withdraws
			// the callback there. No reply, so the tool sees its call's cancellation, not a
			// callback error racing ahead of it.
			return
		}
		ch.reply(callID, reply)
	}()
}

// reply sends a callback's reply, unless the channel breaks first.
func (ch *channel) reply(callID uint64, r *workerv1.CallbackReply) {
	_ = ch.send(context.Background(), &workerv1.HostFrame{CallId: callID, Body: &workerv1.HostFrame_CallbackReply{CallbackReply: r}})
}

// endCallbacks cancels the callbacks still running for a call, with cause. Called with
// the lock held.
func (ch *channel) endCallbacks(callID uint64, cause error) {
	for _, cb := range ch.callbacks {
		if cb.call == callID {
			cb.cancel(cause)
		}
	}
}

// Why a callback's context was cancelled (context.Cause), besides the call's own
// context ending. Each is a context.Canceled, so a function that returns its context's
// cause still reaches Python as kind cancelled.
var (
	errCallbackWithdrawn     = fmt.Errorf("%w: the python caller withdrew the callback", context.Canceled)
	errCallOver              = fmt.Errorf("%w: the tool call that made the callback is over", context.Canceled)
	errCallCancelled         = fmt.Errorf("%w: the tool call that made the callback was cancelled", context.Canceled)
	errCallbackChannelBroken = fmt.Errorf("%w: the channel to the worker broke", context.Canceled)
)

// release gives a region of the worker's output arena back to it. It never blocks: a
// full queue hands the frame to a goroutine.
func (ch *channel) release(offs ...uint64) {
	if len(offs) == 0 {
		return
	}
	f := &workerv1.HostFrame{Body: &workerv1.HostFrame_Release{Release: &workerv1.Release{Offsets: offs}}}
	select {
	case ch.out <- f:
	default:
		go func() { _ = ch.send(context.Background(), f) }()
	}
}

// drain releases what the frames delivered to a call, but never to be read, hold in
// the output arena.
func (ch *channel) drain(p *pending) {
	for {
		select {
		case f := <-p.frames:
			ch.releaseRefs(f)
		default:
			return
		}
	}
}

// releaseRefs releases the output-arena regions a frame names, if any: for frames that
// nobody will read.
func (ch *channel) releaseRefs(f *workerv1.WorkerFrame) {
	var r *workerv1.Result
	switch b := f.GetBody().(type) {
	case *workerv1.WorkerFrame_Result:
		r = b.Result
	case *workerv1.WorkerFrame_Chunk:
		r = b.Chunk
	}
	ch.release(refs(r)...)
}

// credit lets a streaming call send n more chunks.
func (ch *channel) credit(ctx context.Context, id uint64, n uint32) error {
	return ch.send(ctx, &workerv1.HostFrame{CallId: id, Body: &workerv1.HostFrame_Credit{Credit: &workerv1.Credit{Chunks: n}}})
}

// ping sends a heartbeat and waits for its pong.
func (ch *channel) ping(ctx context.Context, req *workerv1.HeartbeatRequest) (*workerv1.HeartbeatResponse, error) {
	w := make(chan *workerv1.HeartbeatResponse, 1)
	ch.mu.Lock()
	ch.pings[req.GetSequence()] = w
	ch.mu.Unlock()
	defer func() {
		ch.mu.Lock()
		delete(ch.pings, req.GetSequence())
		ch.mu.Unlock()
	}()
	if err := ch.send(ctx, &workerv1.HostFrame{Body: &workerv1.HostFrame_Ping{Ping: req}}); err != nil {
		return nil, err
	}
	select {
	case pong := <-w:
		return pong, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-ch.broken:
		return nil, errChannelBroken
	}
}

// errChannelBroken marks a call that failed because the channel did; the client turns
// it into the worker's exit error, or ErrUnavailable.
var errChannelBroken = errors.New("channel to the worker broke")

func tooLarge(op, tool, detail string) error {
	return &CallError{Op: op, Tool: tool, Reason: ErrMessageTooLarge, Detail: detail, Code: codes.ResourceExhausted}
}
