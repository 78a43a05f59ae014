// Package clusterwire is the JSON-lines protocol of the clusternode command: what a spec
// sends a node process on its stdin (Command) and what it answers on its stdout (Answer).
package clusterwire

import "encoding/json"

// Command is one line of a node's stdin.
type Command struct {
	ID         int    `json:"id"`
	Op         string `json:"op"` // call, members, pids or stop
	Pool       string `json:"pool,omitempty"`
	Tool       string `json:"tool,omitempty"`
	Args       any    `json:"args,omitempty"`
	Session    string `json:"session,omitempty"`
	TimeoutMS  int    `json:"timeout_ms,omitempty"`
	Idempotent bool   `json:"idempotent,omitempty"`
	Stream     bool   `json:"stream,omitempty"`
	CID        string `json:"cid,omitempty"`
}

// Answer is one line of a node's stdout: the answer to the Command of its ID, or
// (Ready) the first line, once the node serves.
type Answer struct {
	ID      int               `json:"id"`
	Result  json.RawMessage   `json:"result"`
	Chunks  []json.RawMessage `json:"chunks"`
	Worker  string            `json:"worker"`
	Error   string            `json:"error"`
	Kind    string            `json:"kind"`
	Trace   string            `json:"trace"`
	TookMS  float64           `json:"took_ms"`
	Members []string          `json:"members"`
	PIDs    []int             `json:"pids"`
	Ready   bool              `json:"ready"`
	Node    string            `json:"node"`
	Metrics string            `json:"metrics"`
}
