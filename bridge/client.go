package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// Client calls one worker's tools. It is safe for concurrent use. Errors are typed: see
// errors.go; context deadlines and cancellation reach Python as gRPC deadlines and
// cancellation and come back as ctx.Err().
type Client struct {
	conn *grpc.ClientConn
	raw  workerv1.WorkerServiceClient
	proc *Process // nil for a client of a worker this package did not start
}

func newClient(conn *grpc.ClientConn, proc *Process) *Client {
	return &Client{conn: conn, raw: workerv1.NewWorkerServiceClient(conn), proc: proc}
}

// Conn is the underlying gRPC connection (for the health service, or a bare client).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Request is one tool call.
type Request struct {
	Tool string
	// Args are the tool's keyword arguments, JSON-encoded; a json.RawMessage is sent as
	// it is. nil means no arguments.
	Args          any
	Payload       []byte // optional raw bytes, the tool's ctx.payload
	SessionID     string
	Metadata      map[string]string
	CorrelationID string
}

// Result is what a tool returned.
type Result struct {
	JSON    json.RawMessage // the JSON value returned ("null" when the tool returned bytes)
	Payload []byte          // the bytes returned, if any
}

// Decode unmarshals the JSON result into v.
func (r Result) Decode(v any) error { return json.Unmarshal(r.JSON, v) }

// Info describes a worker and its tools.
type Info struct {
	PID             int
	PythonVersion   string
	PackageVersion  string
	ProtocolVersion int
	WorkerID        string
	Tools           []Tool
}

// Tool describes one registered tool.
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage // JSON Schema of the keyword arguments
	Streaming   bool
	Async       bool
}

// Pong is a heartbeat reply.
type Pong struct {
	Sequence   uint64
	WorkerTime time.Time
	InFlight   int
	PID        int
	RTT        time.Duration
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

// Execute runs one non-streaming tool. A Python exception is a *ToolError.
func (c *Client) Execute(ctx context.Context, req Request) (Result, error) {
	msg, err := c.request("execute", req)
	if err != nil {
		return Result{}, err
	}
	ctx = withCorrelation(ctx, req.CorrelationID)
	var trailer metadata.MD
	resp, err := c.raw.Execute(ctx, msg, grpc.Trailer(&trailer))
	if err != nil {
		return Result{}, c.callError(ctx, "execute", req.Tool, err, trailer)
	}
	switch o := resp.GetOutcome().(type) {
	case *workerv1.ExecuteResponse_Result:
		return Result{JSON: o.Result.GetJson(), Payload: o.Result.GetPayload()}, nil
	case *workerv1.ExecuteResponse_Error:
		return Result{}, toolError(o.Error)
	}
	return Result{}, &CallError{Op: "execute", Tool: req.Tool, Reason: ErrUnavailable, Detail: "worker sent an empty response", Code: codes.Internal}
}

// ExecuteStream runs a streaming (generator) tool and yields its chunks in order. The
// sequence ends after the last chunk, or with one error. Stopping the iteration early
// cancels the call, which closes the Python generator.
func (c *Client) ExecuteStream(ctx context.Context, req Request) iter.Seq2[Result, error] {
	return func(yield func(Result, error) bool) {
		msg, err := c.request("stream", req)
		if err != nil {
			yield(Result{}, err)
			return
		}
		ctx, cancel := context.WithCancel(withCorrelation(ctx, req.CorrelationID))
		defer cancel()
		stream, err := c.raw.ExecuteStream(ctx, msg)
		if err != nil {
			yield(Result{}, c.callError(ctx, "stream", req.Tool, err, nil))
			return
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = &CallError{Op: "stream", Tool: req.Tool, Reason: ErrUnavailable, Detail: "stream ended without a final message", Code: codes.Internal}
				} else {
					err = c.callError(ctx, "stream", req.Tool, err, stream.Trailer())
				}
				yield(Result{}, err)
				return
			}
			switch ev := resp.GetEvent().(type) {
			case *workerv1.ExecuteStreamResponse_Chunk:
				if !yield(Result{JSON: ev.Chunk.GetJson(), Payload: ev.Chunk.GetPayload()}, nil) {
					return
				}
			case *workerv1.ExecuteStreamResponse_Done:
				// Read the end of the stream, so the RPC ends cleanly rather than being
				// cancelled (instrumentation would record that as an error).
				_, _ = stream.Recv()
				return
			case *workerv1.ExecuteStreamResponse_Error:
				yield(Result{}, toolError(ev.Error))
				return
			}
		}
	}
}

// Heartbeat pings the worker.
func (c *Client) Heartbeat(ctx context.Context, seq uint64, correlationID string) (Pong, error) {
	if err := c.usable("heartbeat", ""); err != nil {
		return Pong{}, err
	}
	sent := time.Now()
	var trailer metadata.MD
	resp, err := c.raw.Heartbeat(ctx, &workerv1.HeartbeatRequest{
		Sequence: seq, SentUnixNano: sent.UnixNano(), CorrelationId: correlationID,
	}, grpc.Trailer(&trailer))
	if err != nil {
		return Pong{}, c.callError(ctx, "heartbeat", "", err, trailer)
	}
	return Pong{
		Sequence:   resp.GetSequence(),
		WorkerTime: time.Unix(0, resp.GetWorkerUnixNano()),
		InFlight:   int(resp.GetInFlight()),
		PID:        int(resp.GetPid()),
		RTT:        time.Since(sent),
	}, nil
}

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
		Payload:       req.Payload,
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

// withCorrelation adds the correlation id to the call's gRPC metadata
// (x-correlation-id), for servers and proxies that read metadata, not the request.
func withCorrelation(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "x-correlation-id", id)
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
	if v := trailer.Get("pyvisor-error"); len(v) > 0 {
		reason = v[0]
	}
	mk := func(sentinel error) error {
		return &CallError{Op: op, Tool: tool, Reason: sentinel, Detail: st.Message(), Code: st.Code()}
	}
	switch {
	case reason == "unknown_tool":
		return mk(ErrUnknownTool)
	case reason == "unknown_session":
		return mk(ErrUnknownSession)
	case reason == "invalid_argument" || st.Code() == codes.InvalidArgument:
		return mk(ErrInvalidArgument)
	case reason == "wrong_call_kind" || st.Code() == codes.FailedPrecondition:
		return mk(ErrWrongCallKind)
	case reason == "unauthenticated" || st.Code() == codes.Unauthenticated:
		return mk(ErrUnauthenticated)
	case st.Code() == codes.NotFound:
		return mk(ErrUnknownTool)
	case st.Code() == codes.ResourceExhausted:
		return mk(ErrMessageTooLarge)
	case st.Code() == codes.DeadlineExceeded:
		return mk(context.DeadlineExceeded)
	case st.Code() == codes.Canceled && c.proc == nil:
		return mk(context.Canceled)
	}
	return c.transportError(ctx, op, tool, mk(ErrUnavailable))
}

// transportError decides whether a broken call means the worker died: it waits a
// moment for the process to be reaped, bounded by ctx.
func (c *Client) transportError(ctx context.Context, op, tool string, unavailable error) error {
	if c.proc == nil {
		return unavailable
	}
	t := time.NewTimer(DefaultCrashGrace)
	defer t.Stop()
	select {
	case <-c.proc.done:
		return c.goneError(op, tool)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", opName(op, tool), ctx.Err())
	case <-t.C:
		return unavailable
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
