// Package messages is the vocabulary of pyvisor's actors (the commands and replies
// between the runtime, its pools and workers, and the envelope header of a call's
// correlation id). The wire contract with the Python workers lives in
// proto/pyvisor/worker/v1/worker.proto and its generated Go package workerv1 (with
// Wire, the strings the proto defines once). It has no behaviour.
package messages
