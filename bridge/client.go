package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/nd"
	"github.com/pyvisor/pyvisor/shm"
)

// Client calls one worker's tools over its channel (one bidirectional stream, calls
// multiplexed as frames); sessions and Describe are unary RPCs. It is safe for concurrent
// use. Errors are typed: see errors.go; context deadlines and cancellation reach Python as
// cancel frames and come back as ctx.Err().
type Client struct {
	conn            *grpc.ClientConn
	raw             workerv1.WorkerServiceClient
	ch              *channel
	tracing         *callTracing // nil: calls are not traced
	traceHeartbeats bool
	grace           time.Duration     // WithCancelGrace
	stuck           func(tool string) // WithStuckBody; nil: not reported
	proc            *Process          // nil for a client of a worker this package did not start
	in, out         *shm.Arena        // the worker's arenas; nil: payloads travel in frames
	shared          SharedMemory
}

// Conn is the underlying gRPC connection (for the health service, or a bare client).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Request is one tool call.
type Request struct {
	Tool string
	// Args are the tool's keyword arguments, JSON-encoded; a json.RawMessage is sent as
	// it is. nil means no arguments.
	Args    any
	Payload []byte // optional raw bytes, the tool's ctx.payload
	// Buffer, instead of Payload, is a payload Go wrote in place in the input arena
	// (a lease of SharedMemory.Input): it is sent as it lies, with no copy. The call holds a
	// reference on it until its body is over, so its owner may release it at once.
	Buffer *shm.Lease
	// View hands a payload the worker returned through shared memory over as it lies:
	// Result.Payload is a view of the worker's output arena, valid until Result.Release,
	// which the caller must call. Without View it is copied out and released at once.
	View bool
	// Arrays are typed arrays and Arrow tables, each the keyword argument its name
	// gives; large ones travel through shared memory like Payload (in place when an
	// array's Owner is a lease of the input arena).
	Arrays        map[string]nd.Array
	SessionID     string
	Metadata      map[string]string
	CorrelationID string
	// Over, when set, is called once when the call's Python body is over: before
	// Execute returns (or the stream yields its last) for a call the worker answered, with
	// the call's error; later, from the channel's reader, for a call whose caller gave up
	// (context.Canceled), or when the worker dies first (ErrWorkerCrashed). A body still
	// running WithCancelGrace after its cancellation is reported to WithStuckBody's func.
	Over func(error)
}

// Result is what a tool returned.
type Result struct {
	JSON    json.RawMessage // the JSON value returned ("null" when the tool returned bytes)
	Payload []byte          // the bytes returned, if any
	// Arrays are the typed arrays and tables returned: "" names the whole value, when the
	// tool returned an array; other names are keys of the dict it returned (JSON holds
	// its other keys).
	Arrays  map[string]nd.Array
	release func() // gives a viewed payload back (Request.View)
}

// Decode unmarshals the JSON result into v.
func (r Result) Decode(v any) error { return json.Unmarshal(r.JSON, v) }

// Info describes a worker and its tools.
type Info struct {
	PID             int      `json:"pid"`
	PythonVersion   string   `json:"python_version"`
	PackageVersion  string   `json:"package_version"`
	ProtocolVersion int      `json:"protocol_version"`
	WorkerID        string   `json:"worker_id"`
	Tools           []Tool   `json:"tools"`
	Callbacks       []string `json:"callbacks"` // the Go callbacks its tools can call (WithCallback)
	// CodeVersion names the tool code it loaded: WithCodeVersion's label, else 12 hex
	// digits of a hash of the tools modules' source files (docs/upgrades.md).
	CodeVersion string `json:"code_version"`
}

// Tool describes one registered tool.
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"` // JSON Schema of the keyword arguments
	Streaming   bool            `json:"streaming"`
	Async       bool            `json:"async"`
}

// Pong is a heartbeat reply.
type Pong struct {
	Sequence   uint64
	WorkerTime time.Time
	InFlight   int
	PID        int
	RTT        time.Duration
}

// Broken says whether the client's channel to the worker broke: its calls fail from now
// on, though the process may not have exited yet (the bridge kills it a moment later).
func (c *Client) Broken() bool {
	return c.ch != nil && c.ch.Err() != nil
}

// Describe returns the worker's identity and tools.
func (c *Client) Describe(ctx context.Context) (Info, error) {
	if err := c.usable("describe", ""); err != nil {
		return Info{}, err
	}
	var trailer metadata.MD
	resp, err := c.raw.Describe(ctx, &workerv1.DescribeRequest{}, grpc.Trailer(&trailer))
	if err != nil {
		return Info{}, c.callError(ctx, "describe", "", err, trailer)
	}
	info := Info{
		PID:             int(resp.GetPid()),
		PythonVersion:   resp.GetPythonVersion(),
		PackageVersion:  resp.GetPackageVersion(),
		ProtocolVersion: int(resp.GetProtocolVersion()),
		WorkerID:        resp.GetWorkerId(),
		CodeVersion:     resp.GetCodeVersion(),
	}
	for _, cb := range resp.GetCallbacks() {
		info.Callbacks = append(info.Callbacks, cb.GetName())
	}
	for _, t := range resp.GetTools() {
		info.Tools = append(info.Tools, Tool{
			Name:        t.GetName(),
			Description: t.GetDescription(),
			Parameters:  json.RawMessage(t.GetParametersSchema()),
			Streaming:   t.GetStreaming(),
			Async:       t.GetIsAsync(),
		})
	}
	return info, nil
}

// Execute runs one non-streaming tool on the worker's channel. A Python exception is a
// *ToolError. When ctx ends first, the call returns ctx's error at once and the worker is
// told to cancel the body (Running counts it until the body is over).
func (c *Client) Execute(ctx context.Context, req Request) (Result, error) {
	over := overOnce(req.Over)
	msg, err := c.request("execute", req)
	if err != nil {
		over(err)
		return Result{}, err
	}
	ctx, span, carrier := c.tracing.start(ctx, "Execute", req.CorrelationID)
	over, err = c.payload(ctx, "execute", msg, req, over)
	if err != nil {
		endSpan(span, statusCode(err), err)
		return Result{}, err
	}
	res, err := c.execute(ctx, msg, carrier, over, req.View)
	endSpan(span, statusCode(err), err)
	return res, err
}

func (c *Client) execute(ctx context.Context, msg *workerv1.ExecuteRequest, carrier map[string]string, over func(error), view bool) (res Result, err error) {
	id, p, err := c.ch.start(ctx, "execute", c.callFrame(ctx, msg, false, carrier))
	if err != nil {
		err = c.channelError(ctx, "execute", msg.Tool, err)
		over(err)
		return Result{}, err
	}
	select {
	case f := <-p.frames:
		res, err = c.answer("execute", msg.Tool, f, view)
	case <-ctx.Done():
		c.ch.cancel(id, ctx.Err())
		c.ch.abandon(id, p, over, ctx.Err(), c.grace, c.stuck)
		return Result{}, fmt.Errorf("%s: %w", opName("execute", msg.Tool), ctx.Err())
	case <-c.ch.broken:
		select {
		case f := <-p.frames: // answered just before the channel broke
			res, err = c.answer("execute", msg.Tool, f, view)
		default:
			err = c.channelError(ctx, "execute", msg.Tool, errChannelBroken)
		}
	}
	over(err)
	return res, err
}

// overOnce is req.Over made safe to call more than once (only the first call counts),
// or a no-op without one.
func overOnce(f func(error)) func(error) {
	if f == nil {
		return func(error) {}
	}
	var once sync.Once
	return func(err error) { once.Do(func() { f(err) }) }
}

// callFrame is a call's frame: the request, its remaining time and its trace carrier.
func (c *Client) callFrame(ctx context.Context, msg *workerv1.ExecuteRequest, stream bool, carrier map[string]string) *workerv1.Call {
	call := &workerv1.Call{Request: msg, Stream: stream, TraceContext: carrier}
	if d, ok := ctx.Deadline(); ok {
		call.TimeoutMicros = max(time.Until(d).Microseconds(), 1)
	}
	if stream {
		call.Credit = streamWindow
	}
	return call
}

// answer reads a call's terminal frame.
func (c *Client) answer(op, tool string, f *workerv1.WorkerFrame, view bool) (Result, error) {
	switch b := f.GetBody().(type) {
	case *workerv1.WorkerFrame_Result:
		return c.result(op, tool, b.Result, view)
	case *workerv1.WorkerFrame_ToolError:
		return Result{}, toolError(b.ToolError)
	case *workerv1.WorkerFrame_Failed:
		code := codes.Code(b.Failed.GetCode())
		if err := contractError(op, tool, code, b.Failed.GetReason(), b.Failed.GetMessage()); err != nil {
			return Result{}, err
		}
		if err := c.usable(op, tool); err != nil {
			return Result{}, err // refused because the worker is stopping (ErrStopped) or gone
		}
		return Result{}, &CallError{Op: op, Tool: tool, Reason: ErrUnavailable, Detail: b.Failed.GetMessage(), Code: code}
	case *workerv1.WorkerFrame_BodyEnded:
		// Cancelled by the worker's own deadline timer, before the host's cancel.
		return Result{}, &CallError{Op: op, Tool: tool, Reason: context.DeadlineExceeded, Detail: "deadline exceeded in the worker", Code: codes.DeadlineExceeded}
	}
	return Result{}, &CallError{Op: op, Tool: tool, Reason: ErrUnavailable, Detail: fmt.Sprintf("worker sent an unexpected frame %T", f.GetBody()), Code: codes.Internal}
}

// ExecuteStream runs a streaming (generator) tool and yields its chunks in order. The
// sequence ends after the last chunk, or with one error. Stopping the iteration early
// cancels the call, which closes the Python generator. The worker sends at most a window
// of chunks ahead of the consumer, so a slow consumer holds up only its own call.
func (c *Client) ExecuteStream(ctx context.Context, req Request) iter.Seq2[Result, error] {
	return func(yield func(Result, error) bool) {
		over := overOnce(req.Over)
		msg, err := c.request("stream", req)
		if err != nil {
			over(err)
			yield(Result{}, err)
			return
		}
		ctx, span, carrier := c.tracing.start(ctx, "ExecuteStream", req.CorrelationID)
		over, err = c.payload(ctx, "stream", msg, req, over)
		if err != nil {
			yield(Result{}, err)
			endSpan(span, statusCode(err), err)
			return
		}
		err = c.stream(ctx, msg, carrier, over, req.View, yield)
		endSpan(span, statusCode(err), err)
	}
}

// stream runs one streaming call; it returns the error it yielded, if any. The body is
// cancelled as soon as ctx ends, even while the consumer is busy with a chunk.
func (c *Client) stream(ctx context.Context, msg *workerv1.ExecuteRequest, carrier map[string]string, over func(error), view bool, yield func(Result, error) bool) error {
	fail := func(err error) error {
		over(err) // the pool hears first, as for Execute
		yield(Result{}, err)
		return err
	}
	id, p, err := c.ch.start(ctx, "stream", c.callFrame(ctx, msg, true, carrier))
	if err != nil {
		return fail(c.channelError(ctx, "stream", msg.Tool, err))
	}
	ended := false
	giveUp := func(err error) {
		c.ch.cancel(id, err)
		c.ch.abandon(id, p, over, err, c.grace, c.stuck)
	}
	stop := context.AfterFunc(ctx, func() { giveUp(ctx.Err()) })
	defer func() {
		if stop() && !ended {
			giveUp(context.Canceled) // the consumer stopped early
		}
	}()
	consumed := uint32(0)
	for {
		var f *workerv1.WorkerFrame
		select {
		case f = <-p.frames:
		case <-ctx.Done():
			// Done closes before the AfterFunc starts: whichever of the two gets there
			// first hands the call to the reader.
			if stop() {
				giveUp(ctx.Err())
			}
			ended = true
			yield(Result{}, fmt.Errorf("%s: %w", opName("stream", msg.Tool), ctx.Err()))
			return ctx.Err()
		case <-c.ch.broken:
			select {
			case f = <-p.frames:
			default:
				ended = true
				return fail(c.channelError(ctx, "stream", msg.Tool, errChannelBroken))
			}
		}
		switch b := f.GetBody().(type) {
		case *workerv1.WorkerFrame_Chunk:
			res, err := c.result("stream", msg.Tool, b.Chunk, view)
			if err != nil {
				ended = true
				giveUp(err)
				yield(Result{}, err)
				return err
			}
			if !yield(res, nil) {
				return nil
			}
			if consumed++; consumed == streamWindow/2 {
				consumed = 0
				_ = c.ch.credit(ctx, id, streamWindow/2)
			}
		case *workerv1.WorkerFrame_End:
			ended = true
			over(nil)
			return nil
		default:
			ended = true
			_, err := c.answer("stream", msg.Tool, f, false)
			return fail(err)
		}
	}
}

// Heartbeat pings the worker on its channel; the pong comes from the event loop that
// runs the calls, so a wedged loop misses it.
func (c *Client) Heartbeat(ctx context.Context, seq uint64, correlationID string) (Pong, error) {
	if err := c.usable("heartbeat", ""); err != nil {
		return Pong{}, err
	}
	sent := time.Now()
	req := &workerv1.HeartbeatRequest{Sequence: seq, SentUnixNano: sent.UnixNano(), CorrelationId: correlationID}
	var span trace.Span
	if c.traceHeartbeats {
		ctx, span, req.TraceContext = c.tracing.start(ctx, "Heartbeat", "")
	}
	resp, err := c.ch.ping(ctx, req)
	if err != nil {
		if errors.Is(err, errChannelBroken) {
			err = c.channelError(ctx, "heartbeat", "", err)
		} else {
			err = fmt.Errorf("heartbeat: %w", err)
		}
		endSpan(span, statusCode(err), err)
		return Pong{}, err
	}
	endSpan(span, codes.OK, nil)
	return Pong{
		Sequence:   resp.GetSequence(),
		WorkerTime: time.Unix(0, resp.GetWorkerUnixNano()),
		InFlight:   int(resp.GetInFlight()),
		PID:        int(resp.GetPid()),
		RTT:        time.Since(sent),
	}, nil
}

// Running is the number of calls whose Python body is still running, as far as this
// client knows: calls in flight, and calls whose caller has gone but whose body the
// worker has not yet reported over.
func (c *Client) Running() int { return c.ch.running() }

// channelError turns a failure to use the channel into the call's error. A broken
// channel is the worker failing (ErrWorkerCrashed) at once: its exit, with the status and
// stderr, when the process is reaped within moments (it died), else a *CallError (the
// process lives on for now, and is killed: see Process.openChannel).
func (c *Client) channelError(ctx context.Context, op, tool string, err error) error {
	if !errors.Is(err, errChannelBroken) {
		return err
	}
	if uerr := c.usable(op, tool); uerr != nil {
		return uerr
	}
	detail := err.Error()
	if cerr := c.ch.Err(); cerr != nil {
		detail += ": " + cerr.Error()
	}
	return c.exitOr(ctx, op, tool, channelCrashWait,
		&CallError{Op: op, Tool: tool, Reason: ErrWorkerCrashed, Detail: detail, Code: codes.Unavailable})
}

// channelCrashWait bounds how long a call on a broken channel waits for its process to
// be reaped, so that it fails with the exit: moments for a process that died.
const channelCrashWait = 200 * time.Millisecond

// OpenSession opens a session in the worker; an empty id lets the worker choose one.
// Opening an open session is not an error.
func (c *Client) OpenSession(ctx context.Context, id string) (string, error) {
	if err := c.usable("open session", ""); err != nil {
		return "", err
	}
	var trailer metadata.MD
	resp, err := c.raw.OpenSession(ctx, &workerv1.OpenSessionRequest{SessionId: id}, grpc.Trailer(&trailer))
	if err != nil {
		return "", c.callError(ctx, "open session", "", err, trailer)
	}
	return resp.GetSessionId(), nil
}

// CloseSession drops a session's state; it reports whether the session was open.
func (c *Client) CloseSession(ctx context.Context, id string) (bool, error) {
	if err := c.usable("close session", ""); err != nil {
		return false, err
	}
	var trailer metadata.MD
	resp, err := c.raw.CloseSession(ctx, &workerv1.CloseSessionRequest{SessionId: id}, grpc.Trailer(&trailer))
	if err != nil {
		return false, c.callError(ctx, "close session", "", err, trailer)
	}
	return resp.GetExisted(), nil
}

// SessionState is a session's state as a worker exported it for an upgrade.
type SessionState struct {
	State   []byte // the state dict, pickled
	Version string // the code that made it
	Existed bool   // false: no such session was open
}

// ExportSession copies a session's state out of the worker, for a worker of new code to
// import (the session stays here until this worker stops).
func (c *Client) ExportSession(ctx context.Context, id string) (SessionState, error) {
	if err := c.usable("export session", ""); err != nil {
		return SessionState{}, err
	}
	var trailer metadata.MD
	resp, err := c.raw.ExportSession(ctx, &workerv1.ExportSessionRequest{SessionId: id}, grpc.Trailer(&trailer))
	if err != nil {
		return SessionState{}, c.callError(ctx, "export session", "", err, trailer)
	}
	return SessionState{State: resp.GetState(), Version: resp.GetCodeVersion(), Existed: resp.GetExisted()}, nil
}

// ImportSession opens session id with state another worker exported, through the tools'
// @on_upgrade hook when they have one; it reports whether the hook ran.
func (c *Client) ImportSession(ctx context.Context, id string, s SessionState) (bool, error) {
	if err := c.usable("import session", ""); err != nil {
		return false, err
	}
	var trailer metadata.MD
	resp, err := c.raw.ImportSession(ctx, &workerv1.ImportSessionRequest{SessionId: id, State: s.State, FromVersion: s.Version},
		grpc.Trailer(&trailer))
	if err != nil {
		return false, c.callError(ctx, "import session", "", err, trailer)
	}
	return resp.GetMigrated(), nil
}

// request is the call's message without its payload (see payload).
func (c *Client) request(op string, req Request) (*workerv1.ExecuteRequest, error) {
	if err := c.usable(op, req.Tool); err != nil {
		return nil, err
	}
	var args []byte
	switch a := req.Args.(type) {
	case nil:
	case json.RawMessage:
		args = a
	default:
		var err error
		if args, err = json.Marshal(a); err != nil {
			return nil, &CallError{Op: op, Tool: req.Tool, Reason: ErrInvalidArgument, Detail: "arguments are not JSON-encodable: " + err.Error(), Code: codes.InvalidArgument}
		}
	}
	return &workerv1.ExecuteRequest{
		Tool:          req.Tool,
		Arguments:     args,
		SessionId:     req.SessionID,
		Metadata:      req.Metadata,
		CorrelationId: req.CorrelationID,
	}, nil
}

// usable fails fast once the worker process is gone.
func (c *Client) usable(op, tool string) error {
	if c.proc == nil {
		return nil
	}
	if c.proc.exited() {
		return c.goneError(op, tool)
	}
	if c.proc.stopping.Load() {
		return &CallError{Op: op, Tool: tool, Reason: ErrStopped, Code: codes.Unavailable}
	}
	return nil
}

func (c *Client) goneError(op, tool string) error {
	if !c.proc.crashed {
		return &CallError{Op: op, Tool: tool, Reason: ErrStopped, Code: codes.Unavailable}
	}
	return fmt.Errorf("%s: %w", opName(op, tool), c.proc.exit)
}

func opName(op, tool string) string {
	if tool == "" {
		return op
	}
	return op + " " + tool
}

// callError maps a failed RPC to the package's typed errors.
func (c *Client) callError(ctx context.Context, op, tool string, err error, trailer metadata.MD) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", opName(op, tool), ctxErr)
	}
	st := status.Convert(err)
	reason := ""
	if v := trailer.Get(workerv1.Wire(workerv1.MetadataKey_METADATA_KEY_ERROR_REASON)); len(v) > 0 {
		reason = v[0]
	}
	if err := contractError(op, tool, st.Code(), reason, st.Message()); err != nil {
		return err
	}
	if st.Code() == codes.Canceled && c.proc == nil {
		return &CallError{Op: op, Tool: tool, Reason: context.Canceled, Detail: st.Message(), Code: st.Code()}
	}
	return c.transportError(ctx, op, tool, &CallError{Op: op, Tool: tool, Reason: ErrUnavailable, Detail: st.Message(), Code: st.Code()})
}

// contractError is the typed error of a call the worker refused (its pyvisor-error
// reason, else its status code), or nil for a transport failure.
func contractError(op, tool string, code codes.Code, reason, detail string) error {
	mk := func(sentinel error) error {
		return &CallError{Op: op, Tool: tool, Reason: sentinel, Detail: detail, Code: code}
	}
	r := workerv1.ReasonOf(reason)
	switch {
	case r == workerv1.Reason_REASON_UNKNOWN_TOOL:
		return mk(ErrUnknownTool)
	case r == workerv1.Reason_REASON_UNKNOWN_SESSION:
		return mk(ErrUnknownSession)
	case r == workerv1.Reason_REASON_INVALID_ARGUMENT || code == codes.InvalidArgument:
		return mk(ErrInvalidArgument)
	case r == workerv1.Reason_REASON_WRONG_CALL_KIND || code == codes.FailedPrecondition:
		return mk(ErrWrongCallKind)
	case r == workerv1.Reason_REASON_UNAUTHENTICATED || code == codes.Unauthenticated:
		return mk(ErrUnauthenticated)
	case r == workerv1.Reason_REASON_MESSAGE_TOO_LARGE || code == codes.ResourceExhausted:
		return mk(ErrMessageTooLarge)
	case code == codes.NotFound:
		return mk(ErrUnknownTool)
	case code == codes.DeadlineExceeded:
		return mk(context.DeadlineExceeded)
	}
	return nil
}

// transportError decides whether a broken call means the worker died: it waits a
// moment for the process to be reaped, bounded by ctx.
func (c *Client) transportError(ctx context.Context, op, tool string, unavailable error) error {
	if c.proc == nil {
		return unavailable
	}
	return c.exitOr(ctx, op, tool, DefaultCrashGrace, unavailable)
}

// exitOr waits up to wait for the worker process to be reaped: the call's error is then
// the exit (ErrWorkerCrashed, or ErrStopped), else fallback; ctx's error if ctx ends first.
func (c *Client) exitOr(ctx context.Context, op, tool string, wait time.Duration, fallback error) error {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-c.proc.done:
		return c.goneError(op, tool)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", opName(op, tool), ctx.Err())
	case <-t.C:
		return fallback
	}
}

func toolError(e *workerv1.ToolError) *ToolError {
	return &ToolError{
		Tool:          e.GetTool(),
		Type:          e.GetType(),
		Message:       e.GetMessage(),
		Traceback:     e.GetTraceback(),
		CorrelationID: e.GetCorrelationId(),
	}
}
