package supervision

import (
	"context"
	"fmt"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// Handle controls a running supervisor from outside the actor system.
// Its methods are safe for concurrent use; each one that waits takes a context.
type Handle struct {
	system *actor.ActorSystem
	pid    *actor.PID

	done      chan struct{}
	startOnce sync.Once
	startCh   chan error
	mu        sync.Mutex
	err       error
}

// Props returns the Props of a supervisor of spec, to spawn under any actor
// (for a supervisor under a supervisor, use Nested). When it fails, it
// panics with an *EscalationError, so its parent's protoactor strategy sees
// the failure; spawned from the root context, it stops instead.
func Props(spec Spec, opts ...Option) (*actor.Props, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	return actor.PropsFromProducer(func() actor.Actor { return newSupervisor(spec, cfg, nil) }), nil
}

// Start spawns a top-level supervisor of spec under the root context and waits
// until its children have started, in order. If one fails to start, the
// children already started are stopped in reverse order and Start returns an
// error wrapping ErrStartFailed. If ctx ends first, the supervisor is stopped.
//
// A top-level supervisor has no parent to escalate to: when its intensity is
// exceeded it stops its children and itself, Done is closed and Err returns
// the *EscalationError. ActorSystem.Shutdown stops no actor: call Stop.
func Start(ctx context.Context, system *actor.ActorSystem, spec Spec, opts ...Option) (*Handle, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("start supervisor: %w", err)
	}
	cfg := newConfig(opts)
	h := &Handle{system: system, done: make(chan struct{}), startCh: make(chan error, 1)}
	props := actor.PropsFromProducer(func() actor.Actor { return newSupervisor(spec, cfg, h) })
	var err error
	if cfg.name != "" {
		h.pid, err = system.Root.SpawnNamed(props, cfg.name)
		if err != nil {
			return nil, fmt.Errorf("start supervisor %q: %w", cfg.name, err)
		}
	} else {
		h.pid = system.Root.Spawn(props)
	}
	select {
	case err := <-h.startCh:
		if err != nil {
			<-h.done
			return nil, fmt.Errorf("start supervisor: %w", err)
		}
		return h, nil
	case <-ctx.Done():
		system.Root.Stop(h.pid)
		<-h.done
		return nil, fmt.Errorf("start supervisor: %w", ctx.Err())
	}
}

// Attach returns a Handle for a supervisor spawned some other way (Props,
// Nested). Its Done channel is nil: only Start's handles see the end.
func Attach(system *actor.ActorSystem, pid *actor.PID) *Handle {
	return &Handle{system: system, pid: pid}
}

func (h *Handle) started(err error) {
	h.startOnce.Do(func() {
		if h.startCh != nil {
			h.startCh <- err
		}
	})
}

func (h *Handle) finish(err error) {
	h.started(ErrStopped)
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done:
	default:
		h.err = err
		close(h.done)
	}
}

// PID is the supervisor's actor.
func (h *Handle) PID() *actor.PID { return h.pid }

// Done is closed when the supervisor has stopped, with every child.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Err returns why the supervisor stopped: nil after Stop, an
// *EscalationError when it failed.
func (h *Handle) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Stop stops the children in reverse start order, each within its Shutdown,
// then the supervisor, and waits for it. If ctx ends first, the supervisor
// and its children are killed. On an attached handle it only sends the request.
func (h *Handle) Stop(ctx context.Context) error {
	h.system.Root.Send(h.pid, &stopReq{reason: ErrShutdown})
	if h.done == nil {
		return nil
	}
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		h.system.Root.Stop(h.pid)
		<-h.done
		return fmt.Errorf("stop supervisor: %w", ctx.Err())
	}
}

func (h *Handle) call(ctx context.Context, op string, msg any, ch chan reply) (reply, error) {
	h.system.Root.Send(h.pid, msg)
	select {
	case r := <-ch:
		return r, r.err
	case <-h.done:
		return reply{}, fmt.Errorf("%s: %w", op, ErrStopped)
	case <-ctx.Done():
		return reply{}, fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

// StartChild adds a child after the existing ones and starts it
// (Supervisor.start_child). The error wraps ErrChildExists or ErrStartFailed.
func (h *Handle) StartChild(ctx context.Context, c Child) (*actor.PID, error) {
	ch := make(chan reply, 1)
	r, err := h.call(ctx, "start child", &startChildReq{spec: c, reply: ch}, ch)
	return r.pid, err
}

// TerminateChild stops a child with its Shutdown and keeps its spec, except
// for a temporary child (Supervisor.terminate_child).
func (h *Handle) TerminateChild(ctx context.Context, id string) error {
	ch := make(chan reply, 1)
	_, err := h.call(ctx, "terminate child", &terminateChildReq{id: id, reply: ch}, ch)
	return err
}

// RestartChild starts a terminated child again (Supervisor.restart_child); it
// does not count towards the restart intensity.
func (h *Handle) RestartChild(ctx context.Context, id string) (*actor.PID, error) {
	ch := make(chan reply, 1)
	r, err := h.call(ctx, "restart child", &restartChildReq{id: id, reply: ch}, ch)
	return r.pid, err
}

// DeleteChild removes the spec of a terminated child (Supervisor.delete_child).
func (h *Handle) DeleteChild(ctx context.Context, id string) error {
	ch := make(chan reply, 1)
	_, err := h.call(ctx, "delete child", &deleteChildReq{id: id, reply: ch}, ch)
	return err
}

// WhichChildren lists the children in start order (Supervisor.which_children).
func (h *Handle) WhichChildren(ctx context.Context) ([]ChildInfo, error) {
	ch := make(chan reply, 1)
	r, err := h.call(ctx, "which children", &whichChildrenReq{reply: ch}, ch)
	if err != nil {
		return nil, err
	}
	return r.out.([]ChildInfo), nil
}

// CountChildren counts the children (Supervisor.count_children).
func (h *Handle) CountChildren(ctx context.Context) (Counts, error) {
	ch := make(chan reply, 1)
	r, err := h.call(ctx, "count children", &countChildrenReq{reply: ch}, ch)
	if err != nil {
		return Counts{}, err
	}
	return r.out.(Counts), nil
}
