// Package otelactor carries OpenTelemetry trace context and correlation ids across
// protoactor mailboxes: senders write them into MessageEnvelope headers (Inject), and a
// receiver middleware reads them back and starts one CONSUMER span per mailbox hop,
// whose context the actor then uses for the work the message causes (Traced).
//
// A message whose sender waits for the outcome (a request, a stream) carries the
// ReplyHeader, and its receive span is a child of the sender's span; any other traced
// message is fire-and-forget, and its receive span starts a new trace linked to the
// sender's.
package otelactor
