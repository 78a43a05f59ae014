package supervision_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pyvisor/pyvisor/supervision"
	"github.com/pyvisor/pyvisor/supervision/supervisiontest"
)

// model is the reference of the intensity rules, written independently of
// the supervisor: a restart at t counts at now while now-t < within; a
// restart that makes more than max counted restarts fails the supervisor.
type model struct {
	max      int
	within   time.Duration
	restarts []time.Time
}

func (m *model) fail(now time.Time) (escalate bool) {
	n := 1
	var kept []time.Time
	for _, t := range m.restarts {
		if now.Sub(t) < m.within {
			kept = append(kept, t)
			n++
		}
	}
	m.restarts = append(kept, now)
	return n > m.max
}

// affected is the reference of the strategies, all children running.
func affected(s supervision.Strategy, ids []string, failed int) []string {
	switch s {
	case supervision.OneForAll:
		return ids
	case supervision.RestForOne:
		return ids[failed:]
	}
	return ids[failed : failed+1]
}

type crash struct{}

type crasher struct{}

func (crasher) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(crash); ok {
		panic(errors.New("crash"))
	}
}

type eventLog struct {
	mu     sync.Mutex
	events []supervision.Event
}

func (l *eventLog) hook(e supervision.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) snapshot() []supervision.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]supervision.Event(nil), l.events...)
}

func quiet(*actor.ActorSystem) *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestIntensityMatchesModel runs random sequences of child failures and clock
// advances and checks every decision (restart which children, or escalate)
// against the reference model. Reproduce a run with PYVISOR_MODEL_SEED=<seed>.
func TestIntensityMatchesModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PYVISOR_MODEL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("PYVISOR_MODEL_SEED: %v", err)
		}
	}
	t.Logf("seed %d (PYVISOR_MODEL_SEED=%d reproduces this run)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	system := actor.NewActorSystem(actor.WithLoggerFactory(quiet))
	defer system.Shutdown()

	sequences, escalations := 300, 0
	if testing.Short() {
		sequences = 50
	}
	for seq := range sequences {
		if runSequence(t, system, r, seq) {
			escalations++
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d sequences, %d ended in escalation", sequences, escalations)
	if escalations == 0 || escalations == sequences {
		t.Errorf("the random sequences did not exercise both outcomes (%d of %d escalated)", escalations, sequences)
	}
}

func runSequence(t *testing.T, system *actor.ActorSystem, r *rand.Rand, seq int) (escalated bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clock := supervisiontest.NewFakeClock(time.Unix(0, 0))
	m := &model{max: r.IntN(6), within: time.Duration(1+r.IntN(5)) * time.Second}
	strategy := supervision.Strategy(r.IntN(3))
	var ids []string
	var children []supervision.Child
	for i := range 1 + r.IntN(4) {
		id := fmt.Sprintf("c%d", i)
		ids = append(ids, id)
		children = append(children, supervision.Child{ID: id, Producer: func() actor.Actor { return crasher{} }})
	}
	log := &eventLog{}
	sup, err := supervision.Start(ctx, system, supervision.Spec{Strategy: strategy, MaxRestarts: m.max,
		Within: m.within, Children: children}, supervision.WithClock(clock), supervision.WithEventHook(log.hook))
	if err != nil {
		t.Fatalf("sequence %d: start: %v", seq, err)
	}
	defer func() {
		if !escalated {
			if err := sup.Stop(ctx); err != nil {
				t.Errorf("sequence %d: stop: %v", seq, err)
			}
		}
	}()
	list, err := sup.WhichChildren(ctx)
	if err != nil {
		t.Fatalf("sequence %d: %v", seq, err)
	}
	where := fmt.Sprintf("sequence %d (%v, max %d within %v, %d children)", seq, strategy, m.max, m.within, len(ids))

	for op := range 20 {
		if r.IntN(5) < 3 {
			clock.Advance(time.Duration(r.IntN(10)) * 250 * time.Millisecond) // coarse steps land on window edges
			continue
		}
		i := r.IntN(len(ids))
		before := len(log.snapshot())
		want := m.fail(clock.Now())
		system.Root.Send(list[i].PID, crash{})
		if want {
			select {
			case <-sup.Done():
			case <-ctx.Done():
				t.Fatalf("%s op %d: the model escalates, the supervisor did not", where, op)
			}
			if !errors.Is(sup.Err(), supervision.ErrIntensityExceeded) {
				t.Fatalf("%s op %d: Err() = %v", where, op, sup.Err())
			}
			return true
		}
		// Wait for the failure, then for everything it caused.
		for failedSeen(log.snapshot()[before:]) == 0 {
			select {
			case <-sup.Done():
				t.Fatalf("%s op %d: the supervisor escalated, the model did not", where, op)
			case <-ctx.Done():
				t.Fatalf("%s op %d: no failure seen", where, op)
			default:
			}
			time.Sleep(50 * time.Microsecond) // polling the hook's log, not waiting for a state
		}
		if err := sup.DeleteChild(ctx, "none"); !errors.Is(err, supervision.ErrChildNotFound) {
			t.Fatalf("%s op %d: the supervisor escalated, the model did not (%v)", where, op, err)
		}
		var got []string
		for _, e := range log.snapshot()[before:] {
			if rs, ok := e.(*supervision.ChildRestarted); ok {
				got = append(got, rs.ID)
			}
		}
		if exp := affected(strategy, ids, i); fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("%s op %d: %s failed: restarted %v, the model restarts %v", where, op, ids[i], got, exp)
		}
	}
	return false
}

func failedSeen(events []supervision.Event) int {
	n := 0
	for _, e := range events {
		if _, ok := e.(*supervision.ChildFailed); ok {
			n++
		}
	}
	return n
}
