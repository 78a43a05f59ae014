package messages

// Envelope header keys. Every message between actors travels in a protoactor
// MessageEnvelope carrying these; trace context uses the W3C names.
const (
	HeaderCorrelationID = "correlation-id"
	HeaderTraceParent   = "traceparent"
	HeaderTraceState    = "tracestate"
	HeaderBaggage       = "baggage"
)
