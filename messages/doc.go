// Package messages is the vocabulary shared by pyvisor's actors and its Python workers:
// the wire contract lives in proto/pyvisor/worker/v1/worker.proto and its generated Go
// package workerv1. It has no behaviour.
package messages
