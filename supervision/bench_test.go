package supervision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pyvisor/pyvisor/supervision"
)

// benchChild panics on crash and answers ping: the benchmark measures the time
// from a child's failure to the restarted child handling its next message.
type benchChild struct{}

type benchPing struct{ reply chan struct{} }

func (benchChild) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case crash:
		panic(errors.New("crash"))
	case benchPing:
		m.reply <- struct{}{}
	}
}

// protoParent spawns one child under protoactor-go's own OneForOneStrategy.
type protoParent struct{ ready chan *actor.PID }

func (p *protoParent) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		p.ready <- ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return benchChild{} }))
	}
}

func restartLoop(b *testing.B, system *actor.ActorSystem, child *actor.PID) {
	reply := make(chan struct{}, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		system.Root.Send(child, crash{})
		system.Root.Send(child, benchPing{reply: reply})
		<-reply
	}
}

// BenchmarkRestart: one op is one failure, one restart and one message handled
// by the restarted child, for protoactor-go's OneForOneStrategy and for a
// pyvisor one_for_one supervisor, in the same run.
func BenchmarkRestart(b *testing.B) {
	b.Run("impl=protoactor-one-for-one", func(b *testing.B) {
		system := actor.NewActorSystem(actor.WithLoggerFactory(quiet))
		defer system.Shutdown()
		ready := make(chan *actor.PID, 1)
		strategy := actor.NewOneForOneStrategy(1<<30, 0, actor.DefaultDecider)
		parent := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &protoParent{ready: ready} },
			actor.WithSupervisor(strategy)))
		defer func() { _ = system.Root.PoisonFuture(parent).Wait() }()
		restartLoop(b, system, <-ready)
	})
	b.Run("impl=pyvisor-one-for-one", func(b *testing.B) {
		system := actor.NewActorSystem(actor.WithLoggerFactory(quiet))
		defer system.Shutdown()
		ctx := context.Background()
		sup, err := supervision.Start(ctx, system, supervision.Spec{MaxRestarts: 1 << 30, Within: time.Nanosecond,
			Children: []supervision.Child{{ID: "c", Producer: func() actor.Actor { return benchChild{} }}}})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = sup.Stop(ctx) }()
		list, err := sup.WhichChildren(ctx)
		if err != nil {
			b.Fatal(err)
		}
		restartLoop(b, system, list[0].PID)
	})
}
