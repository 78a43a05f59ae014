package actors

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/shm"
)

// start is a process start under way. If the worker lets go of it first (it restarts
// or stops), the start is cancelled: one still waiting for its turn spawns nothing, and
// a process already spawned is killed.
type start struct {
	ctx       context.Context // the start's; cancelled when it is abandoned
	cancel    context.CancelFunc
	over      chan struct{} // closed once the start's goroutine is done
	mu        sync.Mutex
	abandoned bool
	proc      *bridge.Process // handed over, not yet taken by the actor
}

func newStart() *start {
	ctx, cancel := context.WithCancel(context.Background())
	return &start{ctx: ctx, cancel: cancel, over: make(chan struct{})}
}

// deliver hands a started process over, or reports that nobody wants it.
func (s *start) deliver(p *bridge.Process) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.abandoned {
		return false
	}
	s.proc = p
	return true
}

// abandon gives the start up and returns the process if it was already handed over.
// Whatever it had not handed over yet is killed by the start itself: wait on over for
// that.
func (s *start) abandon() *bridge.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandoned = true
	s.cancel()
	p := s.proc
	s.proc = nil
	return p
}

// live is a running process, the sessions opened in it and the spans of the calls it
// is running.
type live struct {
	*bridge.Process
	mu       sync.Mutex
	sessions map[string]bool
	calls    map[uint64]trace.SpanContext
	nextCall uint64
	running  int             // calls granted on it and not finished
	idleCh   []chan struct{} // closed when running is back to 0
}

// closed forgets a session ended in the process.
func (l *live) closed(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.sessions, id)
}

// opened records sessions whose state is already in the process.
func (l *live) opened(ids ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.sessions[id] = true
	}
}

// begin counts a call granted on the process; end, when it is over.
func (l *live) begin() {
	l.mu.Lock()
	l.running++
	l.mu.Unlock()
}

func (l *live) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running--; l.running == 0 {
		for _, ch := range l.idleCh {
			close(ch)
		}
		l.idleCh = nil
	}
}

// idle is closed once no call granted on the process is running.
func (l *live) idle() <-chan struct{} {
	ch := make(chan struct{})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running == 0 {
		close(ch)
		return ch
	}
	l.idleCh = append(l.idleCh, ch)
	return ch
}

func newLive(p *bridge.Process) *live {
	return &live{Process: p, sessions: map[string]bool{}, calls: map[uint64]trace.SpanContext{}}
}

// track records a running call's span; the returned func forgets it.
func (l *live) track(sc trace.SpanContext) func() {
	if !sc.IsValid() {
		return func() {}
	}
	l.mu.Lock()
	l.nextCall++
	id := l.nextCall
	l.calls[id] = sc
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		delete(l.calls, id)
		l.mu.Unlock()
	}
}

// links are the spans of the calls running now.
func (l *live) links() []trace.Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]trace.Link, 0, len(l.calls))
	for _, sc := range l.calls {
		out = append(out, trace.Link{SpanContext: sc})
	}
	return out
}

// gone reports whether the process has exited (the actor hears of it a moment later).
func (l *live) gone() bool {
	select {
	case <-l.Done():
		return true
	default:
		return l.Client().Broken() // it cannot take a call any more: it is as good as gone
	}
}

// request is the bridge request of a call, opening its session in this process first
// if needed.
func (l *live) request(ctx context.Context, call messages.Call, correlationID string) (bridge.Request, error) {
	if call.SessionID != "" {
		l.mu.Lock()
		opened := l.sessions[call.SessionID]
		l.mu.Unlock()
		if !opened {
			if _, err := l.Client().OpenSession(ctx, call.SessionID); err != nil {
				return bridge.Request{}, err
			}
			l.mu.Lock()
			l.sessions[call.SessionID] = true
			l.mu.Unlock()
		}
	}
	payload := call.Payload
	lease, _ := call.Buffer.(*shm.Lease)
	if lease == nil && call.Buffer != nil {
		payload = call.Buffer.Bytes()
	}
	return bridge.Request{
		Tool:          call.Tool,
		Args:          call.Args,
		Payload:       payload,
		Buffer:        lease,
		View:          call.View,
		Arrays:        call.Arrays,
		SessionID:     call.SessionID,
		Metadata:      call.Metadata,
		CorrelationID: correlationID,
	}, nil
}
