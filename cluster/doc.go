// Package cluster makes pyvisor runtimes the nodes of one protoactor-go cluster, so a
// pool hosted on some nodes is called by name from any node.
//
// Membership, failure detection and the messaging between nodes are protoactor-go's:
// its cluster providers (automanaged, etcd) say which nodes are up and which pools each
// hosts (a pool is a cluster kind), its gossip carries each node's load, and its remote
// carries the calls. pyvisor adds one actor per node, the gateway, which runs the calls
// other nodes send it in the node's own pools, and the caller's side: where a call goes
// (the hosting node with the most free capacity; a session's node by its identity), and
// what happens when that node is lost (ErrNodeLost, an idempotent call retried on
// another node).
//
// Calls cross nodes inside MessageEnvelopes whose headers carry the correlation id,
// trace context and baggage, as on every mailbox hop of a node: one trace per call,
// from the caller's node into the hosting node's Python worker.
package cluster
