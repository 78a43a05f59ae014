package actors

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/propagation"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages"
)

// finishedRecorder is a stand-in pool that reports the callFinished it receives.
func finishedRecorder(t *testing.T, system *actor.ActorSystem) (*actor.PID, <-chan *callFinished) {
	t.Helper()
	got := make(chan *callFinished, 4)
	pid := system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*callFinished); ok {
			got <- m
		}
	}))
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })
	return pid, got
}

func testGrant(system *actor.ActorSystem, pool *actor.PID, untracked *bool) *grant {
	return &grant{system: system, pool: pool, slot: "p-0", inc: 7, untrack: func() { *untracked = true }}
}

func expectFinished(t *testing.T, got <-chan *callFinished) {
	t.Helper()
	select {
	case m := <-got:
		if m.slot != "p-0" || m.inc != 7 {
			t.Fatalf("callFinished for %s/%d, want p-0/7", m.slot, m.inc)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the slot was never freed: a caller that gave up holds its worker")
	}
}

func TestAGrantReachingACallerThatGaveUpFreesTheSlot(t *testing.T) {
	for _, grantFirst := range []bool{false, true} {
		system := actor.NewActorSystem()
		pool, got := finishedRecorder(t, system)
		a := &answer{ch: make(chan any, 1)}
		untracked := false
		if grantFirst { // the grant waits when the caller gives up
			a.Reply(testGrant(system, pool, &untracked))
			a.abandon()
		} else { // the grant arrives after the caller gave up
			a.abandon()
			a.Reply(testGrant(system, pool, &untracked))
		}
		expectFinished(t, got)
		if !untracked {
			t.Fatalf("grant first %v: the given-back call is still tracked on the process", grantFirst)
		}
	}
}

func TestAGrantIsFinishedOnce(t *testing.T) {
	system := actor.NewActorSystem()
	pool, got := finishedRecorder(t, system)
	untracked := false
	g := testGrant(system, pool, &untracked)
	g.finish(nil)
	g.finish(context.Canceled)
	expectFinished(t, got)
	select {
	case <-got:
		t.Fatal("the slot was freed twice")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestACallToAPoolThatIsGoneFailsAtOnceWithErrNoActor(t *testing.T) {
	system := actor.NewActorSystem()
	stop := AnswerDeadLetters(system)
	defer stop()
	gone := system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	if err := system.Root.StopFuture(gone).Wait(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := Caller{System: system, Propagator: propagation.TraceContext{}}
	_, err := c.Execute(ctx, gone, &messages.Execute{Ctx: ctx, Call: messages.Call{Tool: "echo"}})
	if !errors.Is(err, ErrNoActor) {
		t.Fatalf("err = %v, want ErrNoActor", err)
	}
	for _, err := range c.Stream(ctx, gone, &messages.ExecuteStream{Ctx: ctx, Call: messages.Call{Tool: "count"}}) {
		if !errors.Is(err, ErrNoActor) {
			t.Fatalf("stream err = %v, want ErrNoActor", err)
		}
	}
}

func TestACallStillWaitingWhenThePoolsHaveStoppedEndsThen(t *testing.T) {
	system := actor.NewActorSystem()
	// A pool that stops drops what is left in its mailbox: this one never answers.
	silent := system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	t.Cleanup(func() { _ = system.Root.StopFuture(silent).Wait() })
	stopped := make(chan struct{})
	c := Caller{System: system, Propagator: propagation.TraceContext{}, Stopped: stopped}
	done := make(chan error, 1)
	go func() {
		_, err := c.Execute(context.Background(), silent, &messages.Execute{Ctx: context.Background(), Call: messages.Call{Tool: "echo"}})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the call ended before the pools stopped: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(stopped)
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoActor) {
			t.Fatalf("err = %v, want ErrNoActor", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a call with no deadline still waits after the pools stopped")
	}
}

// exitedProcess is a bridge.Process that has already exited: a real worker (the
// interpreter bridge.Interpreter finds, as the godoc examples use), killed once serving.
func exitedProcess(t *testing.T) *bridge.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := bridge.Start(ctx, bridge.WithTools("pyvisor_worker.examples"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAGrantOnAProcessThatHasExitedIsGivenBackAndTheCallAskedAgainFirstInLine(t *testing.T) {
	system := actor.NewActorSystem()
	exited := newLive(exitedProcess(t))
	asked := make(chan any, 2)
	finished := make(chan *callFinished, 2)
	n := 0
	pool := system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *callFinished:
			finished <- m
		case *messages.Execute, *redispatch:
			asked <- m
			_, reply, _ := callFields(m)
			if n++; n == 1 { // the worker's process has exited since
				reply.Reply(&grant{system: system, pool: c.Self(), proc: exited, ctx: context.Background(), slot: "p-0", inc: 7, untrack: func() {}})
				return
			}
			reply.Reply(&messages.ExecuteResult{Err: errors.New("answered the second time")})
		}
	}))
	t.Cleanup(func() { _ = system.Root.StopFuture(pool).Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := Caller{System: system, Propagator: propagation.TraceContext{}}
	res, err := c.Execute(ctx, pool, &messages.Execute{Ctx: ctx, Call: messages.Call{Tool: "echo"}})
	if err != nil || res.Err == nil || res.Err.Error() != "answered the second time" {
		t.Fatalf("Execute = %+v, %v; want the pool's second answer", res, err)
	}
	if first := <-asked; !isExecute(first) {
		t.Fatalf("first ask is %T, want *messages.Execute", first)
	}
	if second := <-asked; !isRedispatch(second) {
		t.Fatalf("second ask is %T, want a *redispatch (first in line)", second)
	}
	expectFinished(t, finished)
}

func isExecute(m any) bool    { _, ok := m.(*messages.Execute); return ok }
func isRedispatch(m any) bool { _, ok := m.(*redispatch); return ok }
