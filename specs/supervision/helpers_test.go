package supervision_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/supervision/supervisiontest"
)

var errBoom = errors.New("boom")

// journal records the lifecycle callbacks of every probe, in order.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, s)
}

func (j *journal) Lines() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.lines...)
}

// Since returns the lines recorded after the first n.
func (j *journal) Since(n int) []string { return j.Lines()[n:] }

// Messages a probe understands.
type (
	boom struct{} // panic: an abnormal exit
	quit struct{} // stop itself: a normal exit
	ping struct{ reply chan string }
)

// probe is a child actor that writes what happens to it in a journal.
type probe struct {
	id        string
	j         *journal
	failStart func() bool
	trap      string // "": stop on ShutdownRequest; "stop": stops itself; "ignore": never stops
}

func (p *probe) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.j.add(p.id + ":start")
		if p.failStart != nil && p.failStart() {
			panic(fmt.Errorf("%s cannot start", p.id))
		}
	case *actor.Restarting:
		p.j.add(p.id + ":restarting")
	case *actor.Stopping:
		p.j.add(p.id + ":stopping")
	case *supervision.ShutdownRequest:
		p.j.add(p.id + ":shutdown")
		if p.trap == "stop" {
			ctx.Stop(ctx.Self())
		}
	case boom:
		p.fail()
	case quit:
		ctx.Stop(ctx.Self())
	case ping:
		m.reply <- p.id
	}
}

func (p *probe) fail() { panic(errBoom) }

type childOpt func(*supervision.Child, *probe)

func restart(r supervision.Restart) childOpt {
	return func(c *supervision.Child, _ *probe) { c.Restart = r }
}

func shutdown(s supervision.Shutdown) childOpt {
	return func(c *supervision.Child, _ *probe) { c.Shutdown = s }
}

func trapping(mode string) childOpt {
	return func(c *supervision.Child, p *probe) { c.TrapExit = true; p.trap = mode }
}

func failingStart(f func() bool) childOpt {
	return func(_ *supervision.Child, p *probe) { p.failStart = f }
}

func worker(id string, j *journal, opts ...childOpt) supervision.Child {
	tmpl := probe{id: id, j: j}
	c := supervision.Child{ID: id}
	for _, o := range opts {
		o(&c, &tmpl)
	}
	c.Producer = func() actor.Actor { p := tmpl; return &p }
	return c
}

// recorder is an event hook that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []supervision.Event
}

func (r *recorder) hook(e supervision.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) All() []supervision.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]supervision.Event(nil), r.events...)
}

func of[T supervision.Event](r *recorder) []T {
	var out []T
	for _, e := range r.All() {
		if t, ok := e.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// ids returns the child ID of each event of type T, in order.
func ids[T supervision.Event](r *recorder) []string {
	var out []string
	for _, e := range of[T](r) {
		switch v := any(e).(type) {
		case *supervision.ChildStarted:
			out = append(out, v.ID)
		case *supervision.ChildRestarted:
			out = append(out, v.ID)
		case *supervision.ChildStopped:
			out = append(out, v.ID)
		case *supervision.ChildFailed:
			out = append(out, v.ID)
		case *supervision.ChildExited:
			out = append(out, v.ID)
		}
	}
	return out
}

// harness is one actor system, one fake clock and one event recorder per spec.
type harness struct {
	system *actor.ActorSystem
	clock  *supervisiontest.FakeClock
	events *recorder
	j      *journal
	ctx    context.Context
}

func newHarness() *harness {
	snapshot := gleak.Goroutines()
	h := &harness{
		system: actor.NewActorSystem(actor.WithLoggerFactory(quietLogger)),
		clock:  supervisiontest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		events: &recorder{},
		j:      &journal{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	h.ctx = ctx
	DeferCleanup(func() {
		cancel()
		h.system.Shutdown()
		Eventually(gleak.Goroutines).ShouldNot(gleak.HaveLeaked(snapshot))
	})
	return h
}

func (h *harness) opts(extra ...supervision.Option) []supervision.Option {
	return append([]supervision.Option{supervision.WithClock(h.clock), supervision.WithEventHook(h.events.hook)}, extra...)
}

// start starts a top-level supervisor and stops it when the spec ends.
func (h *harness) start(spec supervision.Spec) *supervision.Handle {
	sup, err := supervision.Start(h.ctx, h.system, spec, h.opts()...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		select {
		case <-sup.Done():
		default:
			Expect(sup.Stop(context.Background())).To(Succeed())
		}
	})
	return sup
}

func (h *harness) pid(sup *supervision.Handle, id string) *actor.PID {
	list, err := sup.WhichChildren(h.ctx)
	Expect(err).NotTo(HaveOccurred())
	for _, c := range list {
		if c.ID == id {
			return c.PID
		}
	}
	Fail("no child " + id)
	return nil
}

func (h *harness) send(sup *supervision.Handle, id string, msg any) {
	pid := h.pid(sup, id)
	Expect(pid).NotTo(BeNil(), "child %s is not running", id)
	h.system.Root.Send(pid, msg)
}

// settle waits until the supervisor has handled everything queued before it:
// it asks to delete a child that does not exist, which the supervisor answers
// only after its earlier exits and requests are done.
func (h *harness) settle(sup *supervision.Handle) {
	Expect(sup.DeleteChild(h.ctx, "no-such-child")).To(MatchError(supervision.ErrChildNotFound))
}

// fail makes a child panic, waits until the supervisor has seen it and
// handled everything that follows (restarts included).
func (h *harness) fail(sup *supervision.Handle, id string) {
	n := len(of[*supervision.ChildFailed](h.events))
	h.send(sup, id, boom{})
	Eventually(func() int { return len(of[*supervision.ChildFailed](h.events)) }).Should(Equal(n + 1))
	h.settle(sup)
}

func quietLogger(*actor.ActorSystem) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// alive asks a child to answer a ping.
func (h *harness) alive(sup *supervision.Handle, id string) {
	reply := make(chan string, 1)
	h.send(sup, id, ping{reply: reply})
	Eventually(reply).Should(Receive(Equal(id)))
}
