package pyvisor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/cluster"
	"github.com/pyvisor/pyvisor/internal/freeport"
	"github.com/pyvisor/pyvisor/internal/reference"
)

// The cluster's benchmarks: nodes of one automanaged cluster, all in this process (each
// runtime has an actor system and a remote endpoint of its own, on loopback), so a call
// to another node crosses protoactor's remote (gRPC over TCP) and that node's gateway,
// but no network. cmd/bench prints the same comparisons from one interleaved run.

// benchNode is one node of a benchmark's cluster: its name, its pools (1-worker pools
// of the example tools, by name, with their sizes) and the pools it offers to the
// cluster (nil: all of them).
type benchNode struct {
	name  string
	pools map[string]int
	host  []string
}

// benchFreePorts returns n TCP ports free on loopback now.
func benchFreePorts(b *testing.B, n int) []int {
	b.Helper()
	ports, err := freeport.Take(n)
	if err != nil {
		b.Fatal(err)
	}
	return ports
}

// startBenchCluster starts one runtime per node, in order, as the nodes of an
// automanaged cluster (each node's automanaged port on a free loopback port, every
// node a peer of every other), stopped at cleanup in reverse order, and waits until
// every node sees every other.
func startBenchCluster(b *testing.B, python string, nodes ...benchNode) []*pyvisor.Runtime {
	b.Helper()
	ports := benchFreePorts(b, len(nodes))
	var peers, names []string
	for i, n := range nodes {
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", ports[i]))
		names = append(names, n.name)
	}
	var rts []*pyvisor.Runtime
	for i, n := range nodes {
		cfg := pyvisor.Config{Python: python, Cluster: pyvisor.ClusterConfig{
			Provider:    cluster.Automanaged,
			Name:        "bench",
			Node:        n.name,
			Host:        n.host,
			Automanaged: cluster.AutomanagedConfig{Port: ports[i], Peers: peers},
		}}
		for _, pool := range slices.Sorted(maps.Keys(n.pools)) {
			cfg.Pools = append(cfg.Pools, benchPoolConfig(pool, n.pools[pool]))
		}
		rts = append(rts, startRuntimeWith(b, cfg))
	}
	slices.Sort(names)
	deadline := time.Now().Add(30 * time.Second)
	for _, rt := range rts {
		for {
			seen := rt.Members()
			slices.Sort(seen)
			if slices.Equal(seen, names) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("node %s sees %v after 30s, want %v", rt.Node(), seen, names)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return rts
}

// benchPoolConfig is benchConfig's pool under another name.
func benchPoolConfig(name string, workers int) pyvisor.PoolConfig {
	p := benchConfig("", workers).Pools[0]
	p.Name = name
	return p
}

// echoOn makes the echo call on pool through rt, and checks once that it runs on the
// node wantNode ("" for a pool called without the cluster).
func echoOn(b *testing.B, rt *pyvisor.Runtime, pool, wantNode string) func(context.Context) error {
	b.Helper()
	var ran pyvisor.Ran
	if _, err := rt.Execute(context.Background(), pool, "echo", benchArgs, pyvisor.WithRan(&ran)); err != nil {
		b.Fatal(err)
	}
	if ran.Node != wantNode || ran.Worker == "" {
		b.Fatalf("a call of pool %s from node %s ran at %+v, want node %q", pool, rt.Node(), ran, wantNode)
	}
	return func(ctx context.Context) error {
		_, err := rt.Execute(ctx, pool, "echo", benchArgs)
		return err
	}
}

// BenchmarkCluster compares one sequential echo (1-worker pools) made on node a of a
// two-node cluster: call=local to a pool a runs and does not offer to the cluster (the
// plain pool path, no cluster code), call=self to a pool a offers to the cluster and
// alone hosts (the cluster's routing, which picks a itself: no hop), and call=remote to
// a pool only node b hosts (the hop: a's remote endpoint, b's gateway, b's pool, and
// back). Both nodes are in this process, so go-cpu-ns/op is both nodes' Go CPU per
// call (the Python workers' excluded); the hop crosses loopback TCP, no network.
func BenchmarkCluster(b *testing.B) {
	python := benchPython(b)
	rts := startBenchCluster(b, python,
		benchNode{name: "b", pools: map[string]int{"remote": 1}},
		benchNode{name: "a", pools: map[string]int{"local": 1, "self": 1}, host: []string{"self"}},
	)
	a := rts[1]
	ctx := context.Background()
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"local", echoOn(b, a, "local", "a")},
		{"self", echoOn(b, a, "self", "a")},
		{"remote", echoOn(b, a, "remote", "b")},
	}
	for _, c := range calls {
		warm(b, c.call)
	}
	for _, c := range calls {
		b.Run("call="+c.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu, n := goCPUTime(), 0
			for b.Loop() {
				if err := c.call(ctx); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(goCPUTime()-cpu)/float64(n), "go-cpu-ns/op")
			reportRate(b)
		})
	}
}

// BenchmarkClusterThroughput measures the echo rate of benchCallers concurrent callers
// on a client node that runs no pool, calling a pool hosted on two other nodes of 2
// workers each (via=cluster), and, for context, of the same callers on a runtime of
// its own with one local pool of the same 4 workers (via=local). All three nodes, the
// local runtime and the 8 Python workers share this machine's cores.
func BenchmarkClusterThroughput(b *testing.B) {
	python := benchPython(b)
	rts := startBenchCluster(b, python,
		benchNode{name: "host1", pools: map[string]int{benchPool: 2}},
		benchNode{name: "host2", pools: map[string]int{benchPool: 2}},
		benchNode{name: "client"},
	)
	client := rts[2]
	local := startBenchRuntime(b, python, 4)
	viaCluster := func(ctx context.Context) error { return poolEcho(ctx, client) }
	viaLocal := func(ctx context.Context) error { return poolEcho(ctx, local) }
	warm(b, viaCluster)
	warm(b, viaLocal)
	for _, c := range []struct {
		name string
		call func(context.Context) error
	}{{"via=cluster", viaCluster}, {"via=local", viaLocal}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			runCallers(b, c.call)
		})
	}
}

// clusterPayloadSizes are the sizes of BenchmarkClusterPayload and BenchmarkGRPCStream,
// by their names in the benchmarks'.
var clusterPayloadSizes = []struct {
	name string
	n    int
}{{"16MiB", 16 << 20}, {"256MiB", 256 << 20}}

// clusterPayloadDirs are their directions: a-to-b, the bytes from the calling node to
// the node running the pool (or from the gRPC client to the server), and b-to-a back.
var clusterPayloadDirs = []string{"a-to-b", "b-to-a"}

// benchBytes runs call in b.Loop, size bytes an op, after one untimed call, with this
// process's CPU per op as go-cpu-ns/op.
func benchBytes(b *testing.B, size int, call func(context.Context) error) {
	b.Helper()
	ctx := context.Background()
	if err := call(ctx); err != nil { // warm-up
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	cpu, n := goCPUTime(), 0
	for b.Loop() {
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(goCPUTime()-cpu)/float64(n), "go-cpu-ns/op")
}

// BenchmarkClusterPayload measures bytes one way between two nodes of a cluster in this
// process: node a calls a 1-worker pool only node b runs, dir=a-to-b with a payload of
// the size (payload_size: the answer a few bytes), dir=b-to-a asking for a result of
// the size (fill: the call a few bytes; Result.Payload a heap copy on a). The bytes
// cross protoactor's remote in 1 MiB Parts, and shared memory to and from b's worker.
// MB/s is the size over the call's time, against BenchmarkGRPCStream's bare gRPC
// stream under the same names (cmd/bench -steps clusterdata interleaves the two).
// go-cpu-ns/op is both nodes' Go CPU per call.
func BenchmarkClusterPayload(b *testing.B) {
	python := benchPython(b)
	rts := startBenchCluster(b, python,
		benchNode{name: "b", pools: map[string]int{"remote": 1}},
		benchNode{name: "a"},
	)
	a := rts[1]
	payload := make([]byte, clusterPayloadSizes[len(clusterPayloadSizes)-1].n)
	for i := range payload {
		payload[i] = byte(i % 251)
	}
	for _, dir := range clusterPayloadDirs {
		for _, size := range clusterPayloadSizes {
			b.Run(fmt.Sprintf("dir=%s/size=%s", dir, size.name), func(b *testing.B) {
				var ran pyvisor.Ran
				var call func(context.Context) error
				if dir == "a-to-b" {
					in := payload[:size.n]
					call = func(ctx context.Context) error {
						res, err := a.Execute(ctx, "remote", "payload_size", nil, pyvisor.WithPayload(in), pyvisor.WithRan(&ran))
						if err != nil {
							return err
						}
						defer res.Release()
						var n int
						if err := json.Unmarshal(res.JSON, &n); err != nil || n != len(in) {
							return fmt.Errorf("payload_size of %d bytes answered %s", len(in), res.JSON)
						}
						return nil
					}
				} else {
					args := json.RawMessage(fmt.Sprintf(`{"size":%d,"value":7}`, size.n))
					call = func(ctx context.Context) error {
						res, err := a.Execute(ctx, "remote", "fill", args, pyvisor.WithRan(&ran))
						if err != nil {
							return err
						}
						defer res.Release()
						if p := res.Payload; len(p) != size.n || p[0] != 7 || p[len(p)-1] != 7 {
							return fmt.Errorf("fill of %d bytes returned %d", size.n, len(p))
						}
						return nil
					}
				}
				benchBytes(b, size.n, call)
				if ran.Node != "b" || ran.Worker == "" {
					b.Fatalf("a call of pool remote from node a ran at %+v, want node b", ran)
				}
			})
		}
	}
}

// BenchmarkGRPCStream is BenchmarkClusterPayload's baseline, under the same names: a
// bare gRPC stream between two endpoints of this process over loopback TCP
// (reference.Stream), 1 MiB messages; dir=a-to-b a client stream the server counts,
// dir=b-to-a a server stream the client counts. go-cpu-ns/op is both ends' Go CPU.
func BenchmarkGRPCStream(b *testing.B) {
	s, err := reference.StartStream()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	})
	payload := make([]byte, clusterPayloadSizes[len(clusterPayloadSizes)-1].n)
	for i := range payload {
		payload[i] = byte(i % 251)
	}
	for _, dir := range clusterPayloadDirs {
		for _, size := range clusterPayloadSizes {
			b.Run(fmt.Sprintf("dir=%s/size=%s", dir, size.name), func(b *testing.B) {
				call := func(ctx context.Context) error { return s.Download(ctx, size.n) }
				if dir == "a-to-b" {
					call = func(ctx context.Context) error { return s.Upload(ctx, payload[:size.n]) }
				}
				benchBytes(b, size.n, call)
			})
		}
	}
}
