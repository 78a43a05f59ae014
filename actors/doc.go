// Package actors is pyvisor's concurrency and ownership: a Pool actor routes calls and
// owns the queue, a supervisor under it keeps one Worker actor per slot (one_for_one,
// permanent), each Worker owns exactly one Python process (a bridge.Process) and, when
// heartbeats are on, a Heartbeat child that pings it.
//
// Actors never block in Receive: process starts, gRPC calls and timers run on
// goroutines that report back by sending messages through the actor system. Every
// request between actors travels in a MessageEnvelope built by Request or Forward.
package actors
