package cluster

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/lifecycle"
	"github.com/pyvisor/pyvisor/messages"
	"github.com/pyvisor/pyvisor/messages/clusterv1"
	"github.com/pyvisor/pyvisor/nd"
)

// Local is the node's own runtime, where the gateway runs the calls other nodes send.
type Local interface {
	// Execute runs call in the local pool, as any call of this node (its queue, its
	// workers), and says which worker ran it.
	Execute(ctx context.Context, pool string, call messages.Call) (res bridge.Result, worker string, err error)
	// Stream runs a streaming call in the local pool.
	Stream(ctx context.Context, pool string, call messages.Call) iter.Seq2[bridge.Result, error]
	// Load is the load of each local pool, by name.
	Load(ctx context.Context) map[string]*clusterv1.PoolLoad
	// Alloc is n bytes of the local pool's shared memory for bytes a call brings from
	// another node, written there as they arrive and sent to the worker in place; owner
	// holds them (nil, nil, nil: the pool takes them from the Go heap).
	Alloc(ctx context.Context, pool string, n int) (data []byte, owner nd.Owner, err error)
}

// Node is this runtime as a member of the cluster: it runs the calls other nodes send
// to the pools it hosts, and sends calls for pools it does not run to the nodes that do.
// It is safe for concurrent use.
type Node struct {
	cfg     Config
	name    string
	addr    string // the advertised address of this node's remote endpoint
	local   Local
	hosted  map[string]bool
	system  *actor.ActorSystem
	cluster *pcluster.Cluster
	o       options
	tracer  trace.Tracer

	members  atomic.Pointer[[]*pcluster.Member]         // the provider's last topology
	loads    atomic.Pointer[map[string]*clusterv1.Load] // by address
	lost     sync.Map                                   // address -> lostMark: nodes suspected or lost, not chosen while another can be
	instance string                                     // this start of the node: in its call ids
	pins     sync.Map                                   // pool/session -> address
	pinned   atomic.Int64                               // sessions pinned since the pins last started over
	out      outgoing
	in       incoming
	draining atomic.Bool
	seq      atomic.Uint64
	bulk     bulk
	stop     chan struct{}
	release  func()         // what the provider holds beyond its Shutdown
	stopped  sync.WaitGroup // the node's own goroutines
	bg       sync.Mutex     // guards bgOver, so that none is added once Stop waits for them
	bgOver   bool
	unsub    func()
}

// gatewayName is the gateway actor's name on every node.
const gatewayName = "pyvisor-gateway"

// loadKey is the gossip key each node's Load is under.
const loadKey = "pyvisor.load"

// writerQueue is the remote endpoint writer's queue per connection.
const writerQueue = 1 << 14

// loadEvery is how often a node gossips its load and reads the others'.
const loadEvery = 250 * time.Millisecond

// Kind is the cluster kind a node hosting pool registers: the member list says which
// nodes host which pools by their kinds.
func Kind(pool string) string { return "pyvisor.pool/" + pool }

// Start joins the cluster cfg names, offering the pools in hosted (served by local),
// and returns once this node is a member. A provider that cannot start (etcd not
// reachable, a port taken) is Start's error.
func Start(ctx context.Context, cfg Config, local Local, hosted []string, opts ...Option) (n *Node, err error) {
	cfg = cfg.WithDefaults()
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind %q: %w", cfg.Bind, err)
	}
	var member atomic.Pointer[pcluster.Cluster]
	provider, release, etcdClient, err := newProvider(cfg, host, &member)
	if err != nil {
		return nil, err
	}
	log := o.log
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return protoactorLog(log) }))
	n = &Node{cfg: cfg, local: local, hosted: map[string]bool{}, system: system, o: o,
		tracer: o.tp.Tracer("github.com/pyvisor/pyvisor/cluster"), stop: make(chan struct{}), release: release}
	n.out.calls = map[string]*pending{}
	n.instance = strconv.FormatUint(rand.Uint64(), 36)
	n.in.calls = map[string]*served{}
	kinds := make([]*pcluster.Kind, 0, len(hosted))
	for _, p := range hosted {
		n.hosted[p] = true
		kinds = append(kinds, pcluster.NewKind(Kind(p), actor.PropsFromFunc(func(actor.Context) {})))
	}
	pool := &bufferPool{}
	ropts := []remote.ConfigOption{
		// protoactor preallocates a ring of this many slots per connection (16 MB at
		// its default of a million); the mailboxes in front of it queue beyond.
		remote.WithEndpointWriterQueueSize(writerQueue),
		// Calls and results up to the pools' own limits cross in one message, and the
		// endpoint batches many: the pools bound sizes, not the hop.
		// Buffers of the links' own, reused without clearing (see bufferPool).
		remote.WithServerOptions(grpc.MaxRecvMsgSize(math.MaxInt32), experimental.BufferPool(pool), grpc.ForceServerCodecV2(codec{pool})),
		remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()), experimental.WithBufferPool(pool)),
		remote.WithCallOptions(grpc.MaxCallSendMsgSize(math.MaxInt32), grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodecV2(codec{pool})),
	}
	if cfg.Advertise != "" {
		ropts = append(ropts, remote.WithAdvertisedHost(cfg.Advertise))
	}
	ropts = append(ropts, o.remote...)
	rcfg := remote.Configure(host, port, ropts...)
	// Bulk streams (large bytes) share the remote's port and its dial options (its
	// credentials); added after the user's options, which replace lists.
	n.bulk = bulk{dial: rcfg.DialOptions, codec: codec{pool}, conns: map[string]*grpc.ClientConn{}, meets: map[string]*meeting{}}
	rcfg.ServerOptions = append(rcfg.ServerOptions, grpc.UnknownServiceHandler(n.bulk.serve), grpc.ForceServerCodecV2(codec{pool}))
	// A connection attempt that fails is tried once, not five times 2 s apart: a node
	// gone is known sooner (the gossip tells a live one from a dead one, see suspect),
	// and no attempt outlives Stop by more than 2 s.
	rcfg.MaxRetryCount = 1
	n.cluster = pcluster.New(system, pcluster.Configure(cfg.Name, provider, disthash.New(), rcfg, pcluster.WithKinds(kinds...)))
	member.Store(n.cluster)
	n.unsub = n.watch()
	n.name = cfg.Node // the address, when not set, once the remote has one
	if _, err := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &gateway{node: n} }), gatewayName); err != nil {
		n.unsub()
		system.Shutdown()
		_ = quietly(func() error { return provider.Shutdown(false) })
		release()
		n.bulk.close()
		return nil, fmt.Errorf("cluster: spawn gateway: %w", err)
	}
	if err := join(n.cluster); err != nil {
		n.unsub()
		system.Shutdown()
		_ = quietly(func() error { return provider.Shutdown(false) })
		release()
		n.bulk.close()
		return nil, fmt.Errorf("cluster: join %s with %s: %w", cfg.Name, cfg.Provider, err)
	}
	n.addr = system.Address()
	if n.name == "" {
		n.name = n.addr
	}
	n.publish(ctx)
	if o.metrics != nil { // the series exists from the start: an alert sees the first loss
		o.metrics.NodeLosses.Add(ctx, 0)
	}
	n.stopped.Add(2)
	go n.gossipLoad()
	go n.announce(etcdClient)
	return n, nil
}

// join starts the member; protoactor panics when it cannot (a port taken, etcd down).
func join(c *pcluster.Cluster) error {
	return quietly(func() error {
		c.StartMember()
		return nil
	})
}

// quietly runs f, its panic an error.
func quietly(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return f()
}

// newProvider makes cfg's provider; release frees what it holds beyond its own Shutdown
// (the etcd client, also returned for announce).
func newProvider(cfg Config, host string, member *atomic.Pointer[pcluster.Cluster]) (p pcluster.ClusterProvider, release func(), client *clientv3.Client, err error) {
	switch cfg.Provider {
	case Automanaged:
		p, err := newAutomanaged(cfg, host, member)
		return p, func() {}, nil, err
	case Etcd:
		// protoactor's provider waits for etcd without end (its lease grant retries):
		// reach etcd first, within the dial timeout, and hand the provider that client.
		// The client's own log (zap, on stderr) says no more than the errors pyvisor returns.
		client, err := clientv3.New(clientv3.Config{Endpoints: cfg.Etcd.Endpoints, DialTimeout: cfg.Etcd.DialTimeout, Logger: zap.NewNop()})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Etcd.DialTimeout)
			_, err = client.Get(ctx, cfg.Etcd.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			cancel()
			if err != nil {
				_ = client.Close()
			}
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("cluster: etcd at %v not reachable within %s (is it up? check cluster.etcd.endpoints): %w", cfg.Etcd.Endpoints, cfg.Etcd.DialTimeout, err)
		}
		p, err := etcd.NewWithConfig(cfg.Etcd.Prefix, clientv3.Config{Endpoints: cfg.Etcd.Endpoints, DialTimeout: cfg.Etcd.DialTimeout},
			etcd.WithKeepAliveTTL(cfg.Etcd.TTL), etcd.WithEtcdClient(client))
		if err != nil {
			_ = client.Close()
			return nil, nil, nil, fmt.Errorf("cluster: etcd at %v: %w", cfg.Etcd.Endpoints, err)
		}
		return p, func() { _ = client.Close() }, client, nil
	}
	return nil, nil, nil, fmt.Errorf("cluster: unknown provider %q (want %q or %q)", cfg.Provider, Automanaged, Etcd)
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}

// debug reports whether the node's debug lines are written: a call's logger costs an
// allocation, made only then.
func (n *Node) debug() bool {
	return n.o.log.GetLevel() <= zerolog.DebugLevel && zerolog.GlobalLevel() <= zerolog.DebugLevel
}

// Name is this node's name.
func (n *Node) Name() string { return n.name }

// Address is where this node's remote endpoint is reached.
func (n *Node) Address() string { return n.addr }

// Hosts reports whether this node offers pool to the cluster.
func (n *Node) Hosts(pool string) bool { return n.hosted[pool] }

// Members are the names of the nodes in the cluster now (this one included), as far
// as this node knows.
func (n *Node) Members() []string {
	var out []string
	loads := n.loadsNow()
	for _, m := range n.membersNow() {
		name := m.Address()
		if l, ok := loads[m.Address()]; ok && l.GetNode() != "" {
			name = l.GetNode()
		}
		if m.Address() == n.addr {
			name = n.name
		}
		out = append(out, name)
	}
	return out
}

func (n *Node) membersNow() []*pcluster.Member {
	if m := n.members.Load(); m != nil {
		return *m
	}
	return nil
}

func (n *Node) loadsNow() map[string]*clusterv1.Load {
	if l := n.loads.Load(); l != nil {
		return *l
	}
	return nil
}

// watch follows the topology and the remote endpoints: a node that leaves, or whose
// connection breaks, is lost, and the calls it was running end with ErrNodeLost.
func (n *Node) watch() func() {
	sub := n.system.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *pcluster.ClusterTopology:
			members := e.GetMembers()
			for _, m := range e.GetJoined() { // a node restarted at a lost one's address
				n.lost.Delete(m.Address())
			}
			n.members.Store(&members)
			if n.o.metrics != nil {
				n.o.metrics.ClusterMembers.Record(context.Background(), int64(len(members)))
			}
			for _, m := range e.GetLeft() {
				n.nodeLost(m.Address(), "left the cluster")
			}
		case *remote.EndpointTerminatedEvent:
			n.suspect(e.Address)
		case *remote.EndpointConnectedEvent: // a connection (back) to it: alive
			n.lost.Delete(e.Address)
		}
	})
	return func() { n.system.EventStream.Unsubscribe(sub) }
}

// lostMark is why a node is not chosen: its connection broke (a suspect, being pinged),
// or it was lost. It is chosen again once it joins again at its address, reconnects, or
// answers a Ping.
type lostMark struct {
	confirmed bool // lost, not only suspected
}

// suspect is a node whose connection broke (protoactor's EndpointTerminatedEvent): it is
// not chosen while in doubt, and lost unless it answers a Ping within confirmLoss.
// protoactor also reports the end of a connection that broke and came back, or of an old
// one late, after the node at that address was restarted: a node alive must not lose its
// calls for it. (The gossip cannot tell: other nodes relay a dead node's last Loads.)
func (n *Node) suspect(addr string) {
	if addr == n.addr || addr == "" {
		return
	}
	if _, known := n.lost.LoadOrStore(addr, lostMark{}); known {
		return
	}
	n.bg.Lock()
	defer n.bg.Unlock()
	if n.bgOver { // stopping: its calls end with the node's
		return
	}
	n.stopped.Add(1)
	go func() {
		defer n.stopped.Done()
		if n.ping(addr) {
			n.lost.Delete(addr)
			n.o.log.Debug().Str("peer", addr).Msg("cluster node's connection broke, and it answers")
			return
		}
		if _, still := n.lost.Load(addr); still { // not back in the meantime (it joined again)
			n.nodeLost(addr, "connection lost")
		}
	}()
}

// ping reports whether the gateway at addr answers within confirmLoss (asked again every
// confirmEvery), or the node stops first (false).
func (n *Node) ping(addr string) bool {
	for deadline := time.Now().Add(confirmLoss); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), confirmEvery)
		_, err := actors.Request(ctx, n.system, nil, n.stop, gatewayPID(addr), &clusterv1.Ping{})
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-n.stop:
			return false
		case <-ctx.Done(): // the attempt's time is up: a dead letter answers at once
		}
	}
	return false
}

// confirmLoss is how long a node whose connection broke has to answer a Ping, and
// confirmEvery how often one is sent.
const (
	confirmLoss  = time.Second
	confirmEvery = 200 * time.Millisecond
)

// nodeLost fails the calls this node sent to addr, cancels those it runs for addr, and
// stops choosing addr while another node can take a call (see lostMark). A node that
// said it was draining has left, not been lost: it is not counted as a loss.
func (n *Node) nodeLost(addr, why string) {
	if addr == n.addr || addr == "" {
		return
	}
	failed := n.out.lose(addr, ErrNodeLost)
	cancelled := n.in.lose(addr)
	last := n.loadsNow()[addr]
	prev, known := n.lost.Swap(addr, lostMark{confirmed: true})
	known = known && prev.(lostMark).confirmed
	left := last.GetDraining()
	switch {
	case left && failed+cancelled == 0:
		if !known {
			n.o.log.Info().Str("peer", addr).Msg("cluster node left")
		}
	case !known || failed+cancelled > 0:
		n.o.log.Warn().Str("peer", addr).Str("why", why).Int("calls_failed", failed).Int("calls_cancelled", cancelled).Msg("cluster node lost")
		if n.o.metrics != nil && !known {
			n.o.metrics.NodeLosses.Add(context.Background(), 1)
		}
	}
	n.pins.Range(func(k, v any) bool {
		if v == addr {
			n.pins.Delete(k)
		}
		return true
	})
}

// gossipLoad gossips this node's load and reads the others' until Stop.
func (n *Node) gossipLoad() {
	defer n.stopped.Done()
	t := time.NewTicker(loadEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), loadEvery)
			n.publish(ctx)
			cancel()
		}
	}
}

// publish gossips this node's load and reads every member's.
func (n *Node) publish(ctx context.Context) {
	load := &clusterv1.Load{Node: n.name, Address: n.addr, Draining: n.draining.Load(), Pools: map[string]*clusterv1.PoolLoad{}}
	for pool, l := range n.local.Load(ctx) {
		if n.hosted[pool] {
			load.Pools[pool] = l
		}
	}
	n.cluster.Gossip.SetState(loadKey, load)
	states, err := n.cluster.Gossip.GetState(loadKey)
	if err != nil {
		return
	}
	// By address: gossip keys members by actor system id, the member list by the
	// provider's member id (etcd's differs), and both know the address.
	loads := make(map[string]*clusterv1.Load, len(states))
	updated := make(map[string]int64, len(states))
	for _, kv := range states {
		l := &clusterv1.Load{}
		if kv.GetValue().UnmarshalTo(l) != nil || l.GetAddress() == "" {
			continue
		}
		// A node restarted at an address has the old start's last Load there too, until
		// the gossip forgets it: the one this node heard of last wins.
		if at := kv.GetLocalTimestampUnixMilliseconds(); at >= updated[l.GetAddress()] {
			loads[l.GetAddress()], updated[l.GetAddress()] = l, at
		}
	}
	loads[n.addr] = load
	n.loads.Store(&loads)
}

// Stop leaves the cluster gracefully: it stops taking calls from other nodes (they go
// to the other nodes hosting the pools), lets the calls it runs for them finish until
// drain, fails what is still running after it, then leaves the cluster. The local pools
// are the caller's to stop after.
func (n *Node) Stop(ctx context.Context, drain time.Time) error {
	if n.draining.Swap(true) {
		return nil
	}
	n.publish(ctx) // the others stop choosing this node at their next read of the gossip
	wait, cancel := context.WithDeadline(ctx, drain)
	n.in.wait(wait)
	n.out.wait(wait) // this node's own calls on other nodes (the runtime takes no new ones)
	cancel()
	n.in.cancelAll()
	n.bg.Lock()
	n.bgOver = true
	n.bg.Unlock()
	close(n.stop)
	n.stopped.Wait()
	n.unsub()
	n.out.lose("", lifecycle.ErrStopped) // calls still waiting past the drain deadline
	done := make(chan struct{})
	go func() {
		n.leave()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: leave: %w", ctx.Err())
	}
}

// leave is protoactor's graceful Cluster.Shutdown without its two waits: for grains'
// ownership to move (pyvisor has none: 2 s) and for the remote's gRPC server to stop
// gracefully while the other nodes keep their connections open (up to 10 s). The
// calls are over by now; the others have stopped choosing this node (it gossiped
// draining), and block it once the left state reaches them.
func (n *Node) leave() {
	c := n.cluster
	c.Gossip.SetState(pcluster.GracefullyLeftKey, &emptypb.Empty{})
	c.Gossip.SendState()
	time.Sleep(2 * c.Config.GossipInterval) // a round or two for the left state to spread
	_ = quietly(func() error { return c.Config.ClusterProvider.Shutdown(true) })
	c.IdentityLookup.Shutdown()
	c.Gossip.Shutdown()
	c.ActorSystem.Shutdown()
	c.Remote.Shutdown(false)
	n.bulk.close()
	n.release()
}
