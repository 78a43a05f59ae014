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
	"unsafe"

	"google.golang.org/grpc/codes"

	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/nd"
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

// payload puts a request's payload and arrays where they travel, into the input arena
// when large enough (or already there, a caller's Buffer), else in the frame, and returns
// the call's body-over hook extended to free what the call holds. On failure it has
// called over with the error.
func (c *Client) payload(ctx context.Context, op string, msg *workerv1.ExecuteRequest, req Request, over func(error)) (func(error), error) {
	done, err := c.place(ctx, op, msg, req)
	if err != nil {
		over(err)
		return nil, err
	}
	if done == nil {
		return over, nil
	}
	return overOnce(func(err error) { done(); over(err) }), nil
}

// place is payload's placement; done frees what the call holds (nil: nothing).
func (c *Client) place(ctx context.Context, op string, msg *workerv1.ExecuteRequest, req Request) (done func(), err error) {
	if req.Buffer == nil && len(req.Arrays) == 0 && (c.in == nil || len(req.Payload) < c.shared.Threshold) {
		msg.Payload = req.Payload // the common call: in the frame, nothing to free
		return nil, nil
	}
	var owner nd.Owner
	data := req.Payload
	if req.Buffer != nil {
		owner, data = req.Buffer, req.Buffer.Bytes()
	}
	wire, err := checkArrays(op, msg.Tool, req.Arrays)
	if err != nil {
		return nil, err
	}
	blobs := make([]blobIn, 0, 1+len(wire))
	blobs = append(blobs, blobIn{data: data, owner: owner, set: func(inline []byte, ref *workerv1.SharedRef) {
		msg.Payload, msg.PayloadRef = inline, ref
	}})
	for _, w := range wire {
		a := req.Arrays[w.GetName()]
		blobs = append(blobs, blobIn{data: a.Data, owner: a.Owner, set: func(inline []byte, ref *workerv1.SharedRef) {
			w.Data, w.DataRef = inline, ref
		}})
	}
	if done, err = c.placeAll(ctx, op, msg.Tool, blobs); err != nil {
		return nil, err
	}
	msg.Arrays = wire
	return done, nil
}

// blobIn is one blob of bytes of a call (its payload, an array's data), held by owner
// when not nil; set records where it travels.
type blobIn struct {
	data  []byte
	owner nd.Owner
	set   func(inline []byte, ref *workerv1.SharedRef)
}

// placeAll puts a call's blobs where they travel: in place when one already lies in the
// input arena (a caller's Buffer), in the frame when small, else copied into shared
// memory, all of them into one region taken at once (so two calls never each hold part
// of what they need while waiting for the rest), or one region each when together they
// pass the per-payload cap. done frees what the call holds.
func (c *Client) placeAll(ctx context.Context, op, tool string, blobs []blobIn) (done func(), err error) {
	var dones []func()
	free := func() {
		for _, d := range dones {
			d()
		}
	}
	var copies []int // the blobs to copy into shared memory
	var held []nd.Owner
	defer func() {
		for _, o := range held {
			o.Release() // copied (or failed): the call does not hold them
		}
		if err != nil {
			free()
		}
	}()
	for i, b := range blobs {
		if b.owner != nil {
			if !b.owner.Acquire() {
				return nil, &CallError{Op: op, Tool: tool, Reason: ErrInvalidArgument, Detail: "a buffer was released before the call", Code: codes.InvalidArgument}
			}
			if l, ok := b.owner.(*shm.Lease); ok && c.in != nil && l.Arena() == c.in {
				if off, ok := within(l, b.data); ok {
					b.set(nil, &workerv1.SharedRef{Offset: off, Length: uint64(len(b.data))})
					dones = append(dones, b.owner.Release)
					continue
				}
			}
			held = append(held, b.owner)
		}
		if uint64(len(b.data)) > c.shared.MaxPayload && c.in != nil {
			return nil, tooLarge(op, tool, fmt.Sprintf("payload is %d bytes, over the limit of %d bytes", len(b.data), c.shared.MaxPayload))
		}
		if c.in == nil || len(b.data) < c.shared.Threshold {
			data := b.data
			if b.owner != nil {
				data = bytes.Clone(data) // the owner may let go while the frame waits
			}
			b.set(data, nil)
			continue
		}
		copies = append(copies, i)
	}
	if len(copies) == 0 {
		return free, nil
	}
	groups := [][]int{copies} // one region for all
	if _, total := shm.Pack(sizesOf(blobs, copies)); total > c.shared.MaxPayload {
		groups = groups[:0]
		for _, i := range copies {
			groups = append(groups, []int{i})
		}
	}
	for _, g := range groups {
		sizes := sizesOf(blobs, g)
		offsets, size := shm.Pack(sizes)
		lease, err := c.lease(ctx, op, tool, size)
		if err != nil {
			return nil, err
		}
		dones = append(dones, lease.Release)
		region, base := lease.Bytes(), lease.Region().Off
		for j, i := range g {
			copy(region[offsets[j]:], blobs[i].data)
			blobs[i].set(nil, &workerv1.SharedRef{Offset: base + offsets[j], Length: sizes[j]})
		}
	}
	return free, nil
}

// sizesOf are the sizes of blobs[i] for each i of which.
func sizesOf(blobs []blobIn, which []int) []uint64 {
	sizes := make([]uint64, len(which))
	for j, i := range which {
		sizes[j] = uint64(len(blobs[i].data))
	}
	return sizes
}

// lease is size bytes of the input arena, waiting for room until ctx ends.
func (c *Client) lease(ctx context.Context, op, tool string, size uint64) (*shm.Lease, error) {
	lease, err := c.in.Lease(ctx, size)
	if err == nil {
		return lease, nil
	}
	switch {
	case errors.Is(err, shm.ErrTooLarge):
		return nil, tooLarge(op, tool, err.Error())
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: waiting for shared memory: %w", opName(op, tool), ctx.Err())
	case errors.Is(err, shm.ErrClosed): // the worker is gone, and its own arena with it
		return nil, &CallError{Op: op, Tool: tool, Reason: ErrWorkerCrashed, Detail: err.Error(), Code: codes.Unavailable}
	}
	return nil, &CallError{Op: op, Tool: tool, Reason: ErrUnavailable, Detail: err.Error(), Code: codes.Unavailable}
}

// within is the arena offset of data when it lies inside l's region.
func within(l *shm.Lease, data []byte) (uint64, bool) {
	region := l.Bytes()
	if len(data) == 0 || len(region) == 0 {
		return 0, false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(region)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	if at < start || at+uintptr(len(data)) > start+uintptr(len(region)) {
		return 0, false
	}
	return l.Region().Off + uint64(at-start), true
}

// result turns a result or chunk frame into a Result. Payloads in the worker's output
// arena are checked against the arena's bounds (a worker never makes Go read outside
// it), then copied out and released at once, or, with view, handed over as they lie,
// to be released by Result.Release.
func (c *Client) result(op, tool string, r *workerv1.Result, view bool) (Result, error) {
	res := Result{JSON: r.GetJson(), Payload: r.GetPayload()}
	if r.GetPayloadRef() == nil && len(r.GetArrays()) == 0 {
		return res, nil // the common result: all in the frame
	}
	release, err := c.holdOut(refs(r))
	switch {
	case errors.Is(err, shm.ErrClosed): // the process is gone, and its arena with it
		return Result{}, &CallError{Op: op, Tool: tool, Reason: ErrWorkerCrashed, Detail: "the worker's output arena is gone", Code: codes.Unavailable}
	case err != nil:
		return Result{}, c.violation(op, tool, err)
	}
	fail := func(err error) (Result, error) {
		release()
		return Result{}, c.violation(op, tool, err)
	}
	if res.Payload, err = c.outBytes(r.GetPayload(), r.GetPayloadRef()); err != nil {
		return fail(err)
	}
	if res.Arrays, err = c.outArrays(r.GetArrays()); err != nil {
		return fail(err)
	}
	if !view { // copied out, and the regions given back at once
		res.Payload = bytes.Clone(res.Payload)
		for name, a := range res.Arrays {
			a.Data = bytes.Clone(a.Data)
			res.Arrays[name] = a
		}
		release()
		return res, nil
	}
	res.release = sync.OnceFunc(release)
	return res, nil
}

// holdOut holds the worker's output arena for the regions at offs, which it gives back
// with release (a no-op when offs is empty). shm.ErrClosed: the arena is gone with its
// process; another error: the worker sent refs without an arena.
func (c *Client) holdOut(offs []uint64) (release func(), err error) {
	if len(offs) == 0 {
		return func() {}, nil
	}
	if c.out == nil {
		return nil, errors.New("shared-memory refs from a worker given no arena")
	}
	if !c.out.Acquire() {
		return nil, shm.ErrClosed
	}
	return func() {
		c.ch.release(offs...)
		c.out.Release()
	}, nil
}

// outBytes is inline, or the region at ref of the worker's output arena once checked
// against its bounds (a worker never makes Go read outside it): a view.
func (c *Client) outBytes(inline []byte, ref *workerv1.SharedRef) ([]byte, error) {
	if ref == nil {
		return inline, nil
	}
	region := shm.Region{Off: ref.GetOffset(), Len: ref.GetLength()}
	if err := c.out.Check(region); err != nil {
		return nil, err
	}
	return c.out.Bytes(region), nil
}

// outArrays are the arrays a worker sent, as views, each checked: its bytes (outBytes),
// its description (fromWire), its name unique. nil for none.
func (c *Client) outArrays(wire []*workerv1.Array) (map[string]nd.Array, error) {
	if len(wire) == 0 {
		return nil, nil
	}
	arrays := make(map[string]nd.Array, len(wire))
	for _, w := range wire {
		data, err := c.outBytes(w.GetData(), w.GetDataRef())
		if err != nil {
			return nil, err
		}
		a, err := fromWire(w, data)
		if err != nil {
			return nil, err
		}
		if _, dup := arrays[w.GetName()]; dup {
			return nil, fmt.Errorf("two arrays named %q", w.GetName())
		}
		arrays[w.GetName()] = a
	}
	return arrays, nil
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
func NewResult(json []byte, payload []byte, arrays map[string]nd.Array, release func()) Result {
	return Result{JSON: json, Payload: payload, Arrays: arrays, release: release}
}

// Release gives a result's shared-memory payload and arrays back (a result of a call
// made with Request.View). Payload and the arrays' Data must not be used after it. It does nothing for other results,
// and only the first call counts.
func (r Result) Release() {
	if r.release != nil {
		r.release()
	}
}
