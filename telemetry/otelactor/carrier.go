package otelactor

import "go.opentelemetry.io/otel/propagation"

// Carrier is a propagation.TextMapCarrier over envelope headers.
type Carrier map[string]string

var _ propagation.TextMapCarrier = Carrier(nil)

// Get returns the value of key.
func (c Carrier) Get(key string) string { return c[key] }

// Set stores key.
func (c Carrier) Set(key, value string) { c[key] = value }

// Keys lists the keys.
func (c Carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
