package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/shm"
)

// Defaults of SharedMemory.
const (
	DefaultSharedThreshold  = 64 << 10
	DefaultMaxPayload       = 2 << 30
	DefaultInputArenaBytes  = 4 << 30
	DefaultOutputArenaBytes = 4 << 30
	DefaultArenaRetain      = 256 << 20
	DefaultArenaTrimAfter   = 10 * time.Second
)

// SharedMemory says how a worker's large payloads travel: through shared memory (the
// frame carries a handle, the bytes are written once and read in place) instead of
// inside the frames. The zero value means the defaults, on where the system has memfd
// arenas (Linux).
type SharedMemory struct {
	// Off sends every payload inside the frames, bounded by WithMaxMessageBytes.
	Off bool
	// Threshold is the size from which a payload goes through shared memory
	// (DefaultSharedThreshold); smaller ones stay in the frame, where they cost less.
	Threshold int
	// MaxPayload caps one payload, either way (DefaultMaxPayload): a larger one fails
	// its call with ErrMessageTooLarge.
	MaxPayload uint64
	// Input is the pool's input arena, which its workers share (mapped read-only): Go
	// writes a call's payload there before the pool picks the worker. nil: the worker
	// gets an arena of its own, of InputBytes (DefaultInputArenaBytes).
	Input      *shm.Arena
	InputBytes uint64
	// OutputBytes sizes the worker's output arena, where it writes its results
	// (DefaultOutputArenaBytes). Only the pages in use cost memory.
	OutputBytes uint64
	// Retain is how much of the worker's output arena keeps its pages when free
	// (DefaultArenaRetain); free pages above it go back to the system after TrimAfter
	// (DefaultArenaTrimAfter).
	Retain    uint64
	TrimAfter time.Duration
}

// WithSharedMemory sets how large payloads travel (default: through shared memory over
// DefaultSharedThreshold bytes, where the system supports it).
func WithSharedMemory(s SharedMemory) Option { return func(c *config) { c.shared = s } }

// withDefaults fills the zero fields.
func (s SharedMemory) withDefaults() SharedMemory {
	if s.Threshold <= 0 {
		s.Threshold = DefaultSharedThreshold
	}
	if s.MaxPayload == 0 {
		s.MaxPayload = DefaultMaxPayload
	}
	if s.InputBytes == 0 {
		s.InputBytes = DefaultInputArenaBytes
	}
	if s.OutputBytes == 0 {
		s.OutputBytes = DefaultOutputArenaBytes
	}
	if s.Retain == 0 {
		s.Retain = DefaultArenaRetain
	}
	if s.TrimAfter == 0 {
		s.TrimAfter = DefaultArenaTrimAfter
	}
	return s
}

// arenas are a worker's two arenas, each holding one reference for the process.
type arenas struct {
	in, out *shm.Arena
	inFile  *os.File // the input arena reopened read-only, for the child; closed after spawn
	once    sync.Once
}

// openArenas makes the worker's output arena and takes its input arena (the pool's, or
// one of its own). nil, nil when shared memory is off or unsupported.
func openArenas(s SharedMemory, workerID string) (*arenas, error) {
	if s.Off || !shm.Supported() {
		return nil, nil
	}
	a := &arenas{}
	if s.Input != nil {
		if !s.Input.Acquire() {
			return nil, fmt.Errorf("bridge: the pool's input arena is closed")
		}
		a.in = s.Input
	} else {
		in, err := shm.New("pyvisor-in-"+workerID, s.InputBytes, shm.Options{MaxRegion: s.MaxPayload, Retain: s.Retain, TrimAfter: s.TrimAfter})
		if err != nil {
			return nil, fmt.Errorf("bridge: %w", err)
		}
		a.in = in
	}
	out, err := shm.New("pyvisor-out-"+workerID, s.OutputBytes, shm.Options{MaxRegion: s.MaxPayload})
	if err != nil {
		a.in.Release()
		return nil, fmt.Errorf("bridge: %w", err)
	}
	a.out = out
	if a.inFile, err = a.in.ReadOnlyFile(); err != nil {
		a.release()
		return nil, fmt.Errorf("bridge: %w", err)
	}
	return a, nil
}

// args are the worker's command-line flags for the arenas at fds first and first+1.
func (a *arenas) args(s SharedMemory, first int) []string {
	return []string{
		"--shm-in-fd", strconv.Itoa(first),
		"--shm-out-fd", strconv.Itoa(first + 1),
		"--shm-threshold", strconv.Itoa(s.Threshold),
		"--shm-max-payload", strconv.FormatUint(s.MaxPayload, 10),
		"--shm-retain", strconv.FormatUint(s.Retain, 10),
		"--shm-trim-after", strconv.FormatFloat(s.TrimAfter.Seconds(), 'f', 3, 64),
	}
}

// spawned closes what only the child needed.
func (a *arenas) spawned() {
	if a != nil && a.inFile != nil {
		a.inFile.Close()
		a.inFile = nil
	}
}

// release drops the process's references (a view a caller still holds keeps its arena).
func (a *arenas) release() {
	if a == nil {
		return
	}
	a.once.Do(func() {
		a.spawned()
		a.in.Release()
		a.out.Release()
	})
}

// ErrProtocolViolation: the worker sent what the wire contract forbids (a shared-memory
// handle outside its arena, say). The call fails with it and the worker is killed, to be
// replaced: a worker that forges handles is not trusted with the next call.
var ErrProtocolViolation = errors.New("worker broke the wire contract")

// payload puts a request's payload where it travels, into the input arena when it is
// large enough (or already there, a caller's Buffer), else in the frame, and returns the
// call's body-over hook extended to free what the call holds. On failure it has called
// over with the error.
func (c *Client) payload(ctx context.Context, op string, msg *workerv1.ExecuteRequest, req Request, over func(error)) (func(error), error) {
	done, err := c.place(ctx, op, msg, req)
	if err != nil {
		over(err)
		return nil, err
	}
	return overOnce(func(err error) { done(); over(err) }), nil
}

// place is payload's placement; done frees what the call holds.
func (c *Client) place(ctx context.Context, op string, msg *workerv1.ExecuteRequest, req Request) (done func(), err error) {
	data := req.Payload
	if req.Buffer != nil {
		if !req.Buffer.Acquire() {
			return nil, &CallError{Op: op, Tool: msg.Tool, Reason: ErrInvalidArgument, Detail: "the payload buffer was released before the call", Code: codes.InvalidArgument}
		}
		if c.in != nil && req.Buffer.Arena() == c.in {
			r := req.Buffer.Region()
			msg.PayloadRef = &workerv1.SharedRef{Offset: r.Off, Length: r.Len}
			return req.Buffer.Release, nil
		}
		defer req.Buffer.Release() // copied below, before the call starts
		data = req.Buffer.Bytes()
	}
	if uint64(len(data)) > c.shared.MaxPayload && c.in != nil {
		return nil, tooLarge(op, msg.Tool, fmt.Sprintf("payload is %d bytes, over the limit of %d bytes", len(data), c.shared.MaxPayload))
	}
	if c.in == nil || len(data) < c.shared.Threshold {
		msg.Payload = data
		if req.Buffer != nil {
			msg.Payload = bytes.Clone(data) // the buffer may be released while the frame waits
		}
		return func() {}, nil
	}
	lease, err := c.in.Lease(ctx, uint64(len(data)))
	if err != nil {
		switch {
		case errors.Is(err, shm.ErrTooLarge):
			return nil, tooLarge(op, msg.Tool, err.Error())
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%s: waiting for shared memory: %w", opName(op, msg.Tool), ctx.Err())
		case errors.Is(err, shm.ErrClosed): // the worker is gone, and its own arena with it
			return nil, &CallError{Op: op, Tool: msg.Tool, Reason: ErrWorkerCrashed, Detail: err.Error(), Code: codes.Unavailable}
		}
		return nil, &CallError{Op: op, Tool: msg.Tool, Reason: ErrUnavailable, Detail: err.Error(), Code: codes.Unavailable}
	}
	copy(lease.Bytes(), data)
	r := lease.Region()
	msg.PayloadRef = &workerv1.SharedRef{Offset: r.Off, Length: r.Len}
	return lease.Release, nil
}

// result turns a result or chunk frame into a Result. A payload in the worker's output
// arena is checked against the arena's bounds (a worker never makes Go read outside
// it), then copied out and released at once, or, with view, handed over as it lies, to
// be released by Result.Release.
func (c *Client) result(op, tool string, r *workerv1.Result, view bool) (Result, error) {
	ref := r.GetPayloadRef()
	if ref == nil {
		return Result{JSON: r.GetJson(), Payload: r.GetPayload()}, nil
	}
	region := shm.Region{Off: ref.GetOffset(), Len: ref.GetLength()}
	if c.out == nil {
		return Result{}, c.violation(op, tool, errors.New("a shared-memory result from a worker given no arena"))
	}
	if err := c.out.Check(region); err != nil {
		return Result{}, c.violation(op, tool, err)
	}
	if !c.out.Acquire() { // the process is gone, and its arena with it
		return Result{}, &CallError{Op: op, Tool: tool, Reason: ErrWorkerCrashed, Detail: "the worker's output arena is gone", Code: codes.Unavailable}
	}
	b := c.out.Bytes(region)
	release := func() {
		c.ch.release(region.Off)
		c.out.Release()
	}
	if !view {
		res := Result{JSON: r.GetJson(), Payload: bytes.Clone(b)}
		release()
		return res, nil
	}
	return Result{JSON: r.GetJson(), Payload: b, release: sync.OnceFunc(release)}, nil
}

// violation fails a call whose worker broke the wire contract, and kills the worker.
func (c *Client) violation(op, tool string, err error) error {
	if c.proc != nil {
		c.proc.log.Error().Err(err).Str("tool", tool).Msg("python worker broke the wire contract; killing it")
		c.proc.signalGroup(syscall.SIGKILL)
	}
	return &CallError{Op: op, Tool: tool, Reason: ErrProtocolViolation, Detail: err.Error(), Code: codes.Internal}
}

// NewResult is a Result relayed from elsewhere (the actors' reply to the runtime):
// release, when not nil, is what its Release calls.
func NewResult(json []byte, payload []byte, release func()) Result {
	return Result{JSON: json, Payload: payload, release: release}
}

// Release gives a result's shared-memory payload back (a result of a call made with
// Request.View). Payload must not be used after it. It does nothing for other results,
// and only the first call counts.
func (r Result) Release() {
	if r.release != nil {
		r.release()
	}
}
