package messages

// HeaderCorrelationID is the envelope header of a call's correlation id. Every message
// between actors travels in a protoactor MessageEnvelope carrying it; trace context
// travels next to it under the W3C names its propagator writes (traceparent, ...).
const HeaderCorrelationID = "correlation-id"
