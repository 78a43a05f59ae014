package supervision

import (
	"github.com/asynkron/protoactor-go/actor"
)

// childUp tells the supervisor that a child has handled *actor.Started.
type childUp struct{ pid *actor.PID }

// childMiddleware is the innermost receiver middleware of every supervised
// child: it keeps the stack of a panic (re-panicking with *Panic), acks
// *actor.Started to the parent, and stops a child that does not trap exits
// once it has handled *ShutdownRequest.
//
// A nested supervisor acks by itself, once all its children have started.
func childMiddleware(trapExit, selfAck bool) actor.ReceiverMiddleware {
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(*Panic); ok {
						panic(r)
					}
					panic(&Panic{Value: r, Stack: captureStack()})
				}
			}()
			next(c, env)
			switch env.Message.(type) {
			case *actor.Started:
				if p := c.Parent(); p != nil && !selfAck {
					c.ActorSystem().Root.Send(p, &childUp{pid: c.Self()})
				}
			case *ShutdownRequest:
				if !trapExit {
					c.ActorSystem().Root.Stop(c.Self())
				}
			}
		}
	}
}
