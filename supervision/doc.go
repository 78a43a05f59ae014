// Package supervision implements the Erlang/OTP supervisor contract on
// protoactor-go.
//
// A supervisor is a protoactor actor that starts its children in order, stops
// them in reverse order (each within its [Shutdown]), and reacts to their exits
// according to a [Strategy], each child's [Restart] type and a restart
// intensity counted across all of its children. When the intensity is exceeded
// the supervisor stops every child and fails itself, which escalates to its
// own supervisor, exactly as in OTP.
//
// Exits. A child exits abnormally when it panics (protoactor reports the
// failure to its parent; the supervisor records the panic value and the stack
// trace). A child exits normally when it stops itself (ctx.Stop(ctx.Self()) or
// a poison pill). A restart keeps the child's PID and its mailbox: protoactor
// delivers *actor.Restarting to the old actor value (its terminate callback)
// and *actor.Started to a fresh one.
//
// Stopping. A child is stopped with its Shutdown: [BrutalKill] stops it at
// once (queued messages are dropped); [Timeout] and [Infinity] first send it a
// *[ShutdownRequest] message, after the messages already queued. A child
// that does not trap exits stops as soon as it has handled that message; a
// child with Child.TrapExit set stops itself when it is done cleaning up, and
// is killed if its timeout expires first.
//
// Escalation. A nested supervisor ([Nested]) that fails panics with an
// *[EscalationError], which its parent handles as an abnormal exit. A
// top-level supervisor ([Start]) stops instead: [Handle.Done] is closed and
// [Handle.Err] returns the *EscalationError.
//
// Every decision is reported as a typed [Event] to the hook given with
// [WithEventHook]; time comes from a [Clock] ([WithClock]; supervisiontest.FakeClock in
// tests).
package supervision
