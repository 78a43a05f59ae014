package supervision_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pyvisor/pyvisor/supervision"
)

// Worker panics on "crash" and answers "pong" on a channel it is sent.
type Worker struct{}

func (Worker) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case string:
		if m == "crash" {
			panic("worker crashed")
		}
	case chan string:
		m <- "pong"
	}
}

func Example() {
	system := actor.NewActorSystem(actor.WithLoggerFactory(quiet))
	defer system.Shutdown() // stops no actor: sup.Stop below does
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	restarted := make(chan string, 10)
	sup, err := supervision.Start(ctx, system, supervision.Spec{
		Strategy:    supervision.OneForOne,
		MaxRestarts: 3,
		Within:      5 * time.Second,
		Children: []supervision.Child{
			{ID: "worker-0", Producer: func() actor.Actor { return Worker{} }},
			{ID: "worker-1", Producer: func() actor.Actor { return Worker{} },
				Restart: supervision.Transient, Shutdown: supervision.Timeout(time.Second)},
		},
	}, supervision.WithEventHook(func(e supervision.Event) {
		if r, ok := e.(*supervision.ChildRestarted); ok {
			restarted <- r.ID
		}
	}))
	if err != nil {
		fmt.Println(err)
		return
	}

	children, _ := sup.WhichChildren(ctx)
	worker0 := children[0].PID
	system.Root.Send(worker0, "crash")
	fmt.Println("restarted:", <-restarted)

	reply := make(chan string, 1)
	system.Root.Send(worker0, reply) // same PID after the restart
	fmt.Println("worker-0 says", <-reply)

	if err := sup.Stop(ctx); err != nil {
		fmt.Println(err)
	}
	fmt.Println("escalated:", errors.Is(sup.Err(), supervision.ErrIntensityExceeded))
	// Output:
	// restarted: worker-0
	// worker-0 says pong
	// escalated: false
}
