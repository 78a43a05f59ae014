package pyvisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pyvisor/pyvisor/cluster"
)

// ErrInvalidConfig is matched (errors.Is) by every error about a
// configuration value: from Validate, from LoadConfig's decoding, from
// WithEnv. It is not matched by I/O errors reading a file.
var ErrInvalidConfig = errors.New("invalid config")

// FieldError is one problem with one configuration value. It matches
// ErrInvalidConfig and, when there is one, its cause.
type FieldError struct {
	// Field is the value's path by its YAML/JSON keys, for example
	// "pools[0].heartbeat.interval".
	Field string
	// Problem says what is wrong, for example "must be positive, got -1s".
	Problem string
	// Err is the underlying cause, or nil.
	Err error
}

func (e *FieldError) Error() string {
	msg := e.Field + ": " + e.Problem
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrInvalidConfig and the cause, if any.
func (e *FieldError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalidConfig}
	}
	return []error{ErrInvalidConfig, e.Err}
}

var (
	poolNameRE   = regexp.MustCompile(`^[a-z0-9_-]+$`)
	pyModuleRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	simpleKeyRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	poolNameDesc = "[a-z0-9_-]+"
)

// Validate checks c as WithDefaults completes it (a zero field is its
// default, so it is valid) and reports every problem, each a *FieldError
// naming the field, joined with errors.Join. It returns nil if c is valid.
func (c Config) Validate() error {
	c = c.WithDefaults()
	v := &validator{}
	v.notNegative("start_timeout", c.StartTimeout)
	v.positive("stop_timeout", c.StopTimeout)
	if c.Metrics.Enabled {
		if _, port, err := net.SplitHostPort(c.Metrics.Address); err != nil || port == "" {
			v.fail("metrics.address", fmt.Sprintf("must be host:port, got %q", c.Metrics.Address))
		}
	}
	if len(c.Pools) == 0 && !c.Cluster.Enabled() {
		v.fail("pools", "at least one pool is required (or a cluster whose nodes host them)")
	}
	names := make(map[string]int, len(c.Pools))
	for i, p := range c.Pools {
		path := fmt.Sprintf("pools[%d]", i)
		switch {
		case p.Name == "":
			v.fail(path+".name", "is required")
		case !poolNameRE.MatchString(p.Name):
			v.fail(path+".name", fmt.Sprintf("must match %s, got %q", poolNameDesc, p.Name))
		default:
			if j, dup := names[p.Name]; dup {
				v.fail(path+".name", fmt.Sprintf("%q is already the name of pools[%d]", p.Name, j))
			} else {
				names[p.Name] = i
			}
		}
		p.validate(v, path)
	}
	validateCluster(v, c.Cluster, names)
	return errors.Join(v.errs...)
}

// validateCluster checks the cluster section (nothing when it makes no cluster).
func validateCluster(v *validator, c ClusterConfig, pools map[string]int) {
	if !c.Enabled() {
		return
	}
	switch c.Provider {
	case cluster.Automanaged:
		if c.Automanaged.Port < 1 || c.Automanaged.Port > 65535 {
			v.fail("cluster.automanaged.port", fmt.Sprintf("must be a TCP port, got %d", c.Automanaged.Port))
		}
		if len(c.Automanaged.Peers) == 0 {
			v.fail("cluster.automanaged.peers", "at least one peer (host:port of a node's automanaged port) is required")
		}
		for i, p := range c.Automanaged.Peers {
			hostPort(v, fmt.Sprintf("cluster.automanaged.peers[%d]", i), p, false)
		}
		v.positive("cluster.automanaged.refresh", c.Automanaged.Refresh)
	case cluster.Etcd:
		if len(c.Etcd.Endpoints) == 0 {
			v.fail("cluster.etcd.endpoints", "at least one etcd endpoint is required")
		}
		v.positive("cluster.etcd.dial_timeout", c.Etcd.DialTimeout)
		if c.Etcd.TTL < time.Second {
			v.fail("cluster.etcd.ttl", fmt.Sprintf("must be at least 1s (etcd leases count seconds), got %s", c.Etcd.TTL))
		}
	default:
		v.fail("cluster.provider", fmt.Sprintf("must be %q or %q, got %q", cluster.Automanaged, cluster.Etcd, c.Provider))
	}
	if !simpleKeyRE.MatchString(c.Name) {
		v.fail("cluster.name", fmt.Sprintf("must match [A-Za-z0-9_-]+, got %q", c.Name))
	}
	if c.Node != "" && strings.ContainsAny(c.Node, " \t\n/") {
		v.fail("cluster.node", fmt.Sprintf("must have no spaces or slashes, got %q", c.Node))
	}
	hostPort(v, "cluster.bind", c.Bind, true)
	if c.Advertise != "" {
		hostPort(v, "cluster.advertise", c.Advertise, false)
	} else if host, _, err := net.SplitHostPort(c.Bind); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			v.fail("cluster.advertise", fmt.Sprintf("is required when cluster.bind listens on every interface (%q): the other nodes need an address to reach", c.Bind))
		}
	}
	for i, p := range c.Host {
		if _, ok := pools[p]; !ok {
			v.fail(fmt.Sprintf("cluster.host[%d]", i), fmt.Sprintf("%q is not one of this node's pools", p))
		}
	}
	if c.StreamWindow < 1 {
		v.fail("cluster.stream_window", fmt.Sprintf("must be at least 1, got %d", c.StreamWindow))
	}
}

// hostPort checks that s is host:port (port 0 only when zero is allowed).
func hostPort(v *validator, field, s string, zero bool) {
	_, p, err := net.SplitHostPort(s)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil || n < 0 || n > 65535 || (n == 0 && !zero) {
		v.fail(field, fmt.Sprintf("must be host:port, got %q", s))
	}
}

func (p PoolConfig) validate(v *validator, path string) {
	if len(p.Tools) == 0 {
		v.fail(path+".tools", "at least one python module is required")
	}
	for j, m := range p.Tools {
		if !pyModuleRE.MatchString(m) {
			v.fail(fmt.Sprintf("%s.tools[%d]", path, j), fmt.Sprintf("must be a python module name, got %q", m))
		}
	}
	if p.Workers < 1 || p.Workers > MaxWorkers {
		v.fail(path+".workers", fmt.Sprintf("must be between 1 and %d, got %d", MaxWorkers, p.Workers))
	}
	v.atLeast(path+".startup_batch", p.StartupBatch, 1)
	v.atLeast(path+".max_concurrent", p.MaxConcurrent, 1)
	if p.QueueSize < NoQueue {
		v.fail(path+".queue_size", fmt.Sprintf("must be at least 0, or -1 for no queue, got %d", p.QueueSize))
	}
	v.positive(path+".queue_timeout", p.QueueTimeout)
	if p.Affinity != AffinityHint && p.Affinity != AffinityStrict {
		v.fail(path+".affinity", fmt.Sprintf("must be %q or %q, got %q", AffinityHint, AffinityStrict, p.Affinity))
	}
	v.positive(path+".handshake_timeout", p.HandshakeTimeout)
	v.positive(path+".load_timeout", p.LoadTimeout)
	v.positive(path+".stop_timeout", p.StopTimeout)
	v.positive(path+".cancel_grace", p.CancelGrace)
	v.atLeast(path+".max_message_bytes", p.MaxMessageBytes, 1)
	m := p.SharedMemory
	v.atLeast(path+".shared_memory.threshold", m.Threshold, 1)
	v.atLeast(path+".shared_memory.max_payload_bytes", int(m.MaxPayloadBytes), 1)
	v.atLeast(path+".shared_memory.pool_bytes", int(m.PoolBytes), 1)
	v.atLeast(path+".shared_memory.worker_bytes", int(m.WorkerBytes), 1)
	v.atLeast(path+".shared_memory.retain_bytes", int(m.RetainBytes), 0)
	if m.TrimAfter < 0 {
		v.fail(path+".shared_memory.trim_after", fmt.Sprintf("must not be negative, got %v", m.TrimAfter))
	}
	for k, val := range p.Env {
		field := keyPath(path+".env", k)
		if envName(v, field, k) && strings.ContainsRune(val, 0) {
			v.fail(field, "value must not contain NUL")
		}
	}
	p.validateSlots(v, path+".slots")

	h := p.Heartbeat
	v.positive(path+".heartbeat.interval", h.Interval)
	v.positive(path+".heartbeat.timeout", h.Timeout)
	v.atLeast(path+".heartbeat.max_missed", h.MaxMissed, 1)
	v.notNegative(path+".heartbeat.initial_delay", h.InitialDelay)

	r := p.Restart
	v.atLeast(path+".restart.max_restarts", r.MaxRestarts, 0)
	v.positive(path+".restart.within", r.Within)
	b := r.Backoff
	v.notNegative(path+".restart.backoff.initial", b.Initial)
	switch {
	case b.Max < 0:
		v.notNegative(path+".restart.backoff.max", b.Max)
	case b.Initial > 0 && b.Max < b.Initial:
		v.fail(path+".restart.backoff.max", fmt.Sprintf("must be at least initial (%v), got %v", b.Initial, b.Max))
	}
	if m := b.Multiplier; m != 0 && (!(m >= 1) || math.IsInf(m, 0)) {
		v.fail(path+".restart.backoff.multiplier", fmt.Sprintf("must be a finite number at least 1, got %v", m))
	}

	if p.MemoryLimit < 0 {
		v.fail(path+".memory_limit", fmt.Sprintf("must be at least 0, got %d", p.MemoryLimit))
	}
	v.notNegative(path+".sessions.idle_timeout", p.Sessions.IdleTimeout)
	v.atLeast(path+".sessions.max", p.Sessions.Max, 0)
	up := p.Upgrade
	v.positive(path+".upgrade.warm_up_timeout", up.WarmUpTimeout)
	v.positive(path+".upgrade.drain_timeout", up.DrainTimeout)
	v.notNegative(path+".upgrade.canary", up.Canary)
	v.notNegative(path+".upgrade.session_deadline", up.SessionDeadline)
	v.atLeast(path+".upgrade.max_surge", up.MaxSurge, 1)
	if r := up.MaxFailureRatio; !(r >= 0 && r < 1) {
		v.fail(path+".upgrade.max_failure_ratio", fmt.Sprintf("must be at least 0 and less than 1, got %v", r))
	}
	if up.WarmUpArgs != "" {
		var args map[string]any
		if up.WarmUpTool == "" {
			v.fail(path+".upgrade.warm_up_args", "needs upgrade.warm_up_tool")
		} else if err := json.Unmarshal([]byte(up.WarmUpArgs), &args); err != nil {
			v.fail(path+".upgrade.warm_up_args", fmt.Sprintf("must be a JSON object: %v", err))
		}
	}
	rc := p.Recycle
	v.atLeast(path+".recycle.max_calls", rc.MaxCalls, 0)
	v.notNegative(path+".recycle.max_age", rc.MaxAge)
	if rc.MaxRSSBytes < 0 {
		v.fail(path+".recycle.max_rss_bytes", fmt.Sprintf("must be at least 0, got %d", rc.MaxRSSBytes))
	}
	if rc.MaxGPUBytes < 0 {
		v.fail(path+".recycle.max_gpu_bytes", fmt.Sprintf("must be at least 0, got %d", rc.MaxGPUBytes))
	}
}

// validateSlots checks the slots section: each template parses and runs for every slot
// of the pool's size, giving a value an environment can hold.
func (p PoolConfig) validateSlots(v *validator, path string) {
	s := p.Slots
	for i, d := range s.Devices {
		if d == "" || strings.ContainsRune(d, 0) {
			v.fail(fmt.Sprintf("%s.devices[%d]", path, i), fmt.Sprintf("must be a device id such as \"0\", got %q", d))
		}
	}
	if len(s.Devices) > 0 && len(s.Env) == 0 {
		v.fail(path+".devices", "are only used by slots.env templates ({{.Device}}), and there are none")
	}
	workers := min(max(p.Workers, 1), MaxWorkers) // a bad size is reported on its own
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		field := keyPath(path+".env", k)
		if !envName(v, field, k) {
			continue
		}
		t, err := parseSlotTemplate(k, s.Env[k])
		if err != nil {
			v.errs = append(v.errs, &FieldError{Field: field, Problem: "is not a valid template", Err: err})
			continue
		}
		for slot := range workers {
			if _, err := (slotTemplate{name: k, tmpl: t}).render(s.data(p.Name, workers, slot)); err != nil {
				v.errs = append(v.errs, &FieldError{Field: field, Problem: fmt.Sprintf("fails for slot %d", slot), Err: err})
				break
			}
		}
	}
}

// envName checks the name of an environment variable, reporting it under field.
func envName(v *validator, field, name string) bool {
	switch {
	case name == "":
		v.fail(field, "variable name is empty")
	case strings.ContainsAny(name, "=\x00"):
		v.fail(field, "variable name must not contain '=' or NUL")
	case name == slotVar || name == poolVar:
		v.fail(field, "is set by the runtime (the worker's slot and pool): it cannot be set here")
	default:
		return true
	}
	return false
}

// keyPath is the path of a map entry: base.key, or base["odd key"].
func keyPath(base, key string) string {
	if simpleKeyRE.MatchString(key) {
		return base + "." + key
	}
	return base + "[" + strconv.Quote(key) + "]"
}

type validator struct{ errs []error }

func (v *validator) fail(field, problem string) {
	v.errs = append(v.errs, &FieldError{Field: field, Problem: problem})
}

func (v *validator) positive(field string, d time.Duration) {
	if d <= 0 {
		v.fail(field, fmt.Sprintf("must be positive, got %v", d))
	}
}

func (v *validator) notNegative(field string, d time.Duration) {
	if d < 0 {
		v.fail(field, fmt.Sprintf("must not be negative, got %v", d))
	}
}

func (v *validator) atLeast(field string, n, least int) {
	if n < least {
		v.fail(field, fmt.Sprintf("must be at least %d, got %d", least, n))
	}
}
