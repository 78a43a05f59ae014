// Package actors is pyvisor's concurrency and ownership: a Pool actor routes calls and
// owns the queue, a supervisor under it keeps one Worker actor per slot (one_for_one,
// permanent), each Worker owns exactly one Python process (a bridge.Process) and, when
// heartbeats are on, a Heartbeat child that pings it.
//
// A call (Execute, Stream) is one message into its pool, which grants it a worker's
// process; the caller then runs the gRPC call on its own goroutine and tells the pool
// when it is done. The pool's mailbox runs on its senders' goroutines. Both save
// goroutine hand-offs, the largest part of a call's own cost.
//
// Actors never block in Receive: process starts, gRPC calls and timers run on
// goroutines that report back by sending messages through the actor system. Every
// request between actors travels in a MessageEnvelope with the call's headers, built by
// Request, Execute or Stream.
package actors
