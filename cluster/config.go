package cluster

import "time"

// The cluster providers Config.Provider names.
const (
	// Automanaged: a static list of peers, each polled over HTTP (no external service).
	Automanaged = "automanaged"
	// Etcd: members register in, and watch, a real etcd.
	Etcd = "etcd"
)

// Defaults of Config.
const (
	DefaultName            = "pyvisor"
	DefaultBind            = "127.0.0.1:0"
	DefaultRefresh         = time.Second
	DefaultEtcdPrefix      = "/pyvisor"
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultEtcdTTL         = 3 * time.Second
	DefaultStreamWindow    = 32
)

// Config makes a runtime a node of a cluster. The zero value (no Provider) is no
// cluster: the runtime runs in its process alone, as without this section.
type Config struct {
	// Provider is how nodes find each other: "automanaged" or "etcd". Default "": no
	// cluster.
	Provider string `json:"provider" yaml:"provider"`
	// Name is the cluster's name: only nodes of the same name form a cluster. Default
	// "pyvisor".
	Name string `json:"name" yaml:"name"`
	// Node is this node's name, in logs, metrics (label node) and errors. Default: its
	// advertised address.
	Node string `json:"node" yaml:"node"`
	// Bind is the host:port the node's remote endpoint (gRPC between nodes) listens
	// on. Default "127.0.0.1:0": loopback, any free port. Bind beyond loopback only on
	// a network you trust, or with TLS (docs/cluster.md).
	Bind string `json:"bind" yaml:"bind"`
	// Advertise is the host:port other nodes reach this node at. Default: the address
	// Bind listens on.
	Advertise string `json:"advertise" yaml:"advertise"`
	// Host lists the local pools this node offers to the cluster. Default: all of them.
	// A pool not listed is called only on this node.
	Host []string `json:"host" yaml:"host"`
	// StreamWindow is how many chunks of a remote stream its hosting node sends ahead
	// of the caller's consumption. Default 32.
	StreamWindow int `json:"stream_window" yaml:"stream_window"`
	// Automanaged configures the automanaged provider.
	Automanaged AutomanagedConfig `json:"automanaged" yaml:"automanaged"`
	// Etcd configures the etcd provider.
	Etcd EtcdConfig `json:"etcd" yaml:"etcd"`
}

// AutomanagedConfig configures protoactor's automanaged provider: every node serves its
// state on an HTTP port and polls every peer's.
type AutomanagedConfig struct {
	// Port is this node's HTTP port for its peers' polls, on the Bind host. Required.
	Port int `json:"port" yaml:"port"`
	// Peers are the host:port of every node's Port, this node's included. Required.
	Peers []string `json:"peers" yaml:"peers"`
	// Refresh is how often each peer is polled: a node lost is seen within about one
	// Refresh. Default 1s.
	Refresh time.Duration `json:"refresh" yaml:"refresh"`
}

// EtcdConfig configures protoactor's etcd provider.
type EtcdConfig struct {
	// Endpoints are etcd's client URLs or host:port. Required.
	Endpoints []string `json:"endpoints" yaml:"endpoints"`
	// Prefix is the key prefix the members register under. Default "/pyvisor".
	Prefix string `json:"prefix" yaml:"prefix"`
	// DialTimeout bounds connecting to etcd at start. Default 5s.
	DialTimeout time.Duration `json:"dial_timeout" yaml:"dial_timeout"`
	// TTL is the lease of a member's key: a node lost leaves the member list within
	// about one TTL. Default 3s.
	TTL time.Duration `json:"ttl" yaml:"ttl"`
}

// Enabled reports whether the config makes a cluster.
func (c Config) Enabled() bool { return c.Provider != "" }

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if !c.Enabled() {
		return c
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Bind == "" {
		c.Bind = DefaultBind
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.Automanaged.Refresh == 0 {
		c.Automanaged.Refresh = DefaultRefresh
	}
	if c.Etcd.Prefix == "" {
		c.Etcd.Prefix = DefaultEtcdPrefix
	}
	if c.Etcd.DialTimeout == 0 {
		c.Etcd.DialTimeout = DefaultEtcdDialTimeout
	}
	if c.Etcd.TTL == 0 {
		c.Etcd.TTL = DefaultEtcdTTL
	}
	return c
}
