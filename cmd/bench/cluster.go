package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/cluster"
	"github.com/pyvisor/pyvisor/internal/freeport"
	"github.com/pyvisor/pyvisor/internal/reference"
	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// clusterNode is one node of a cluster the cluster step starts: its name, its pools of
// the example tools (name and workers) and the pools it offers to the cluster (nil:
// all of them).
type clusterNode struct {
	name  string
	pools []pyvisor.PoolConfig
	host  []string
}

func namedPool(name string, workers int) pyvisor.PoolConfig {
	p := config("", workers).Pools[0]
	p.Name = name
	return p
}

// startCluster starts the nodes, in order, as one automanaged cluster in this process
// (each node's automanaged port a free loopback port, every node a peer of every
// other), and waits until every node sees every other. stop stops them in reverse
// order, whatever happened.
func startCluster(ctx context.Context, python string, nodes ...clusterNode) (rts []*pyvisor.Runtime, stop func() error, err error) {
	stop = func() error {
		var errs []error
		for i := len(rts) - 1; i >= 0; i-- {
			errs = append(errs, stopRuntime(rts[i]))
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, stop())
		}
	}()
	ports, err := freeport.Take(len(nodes))
	if err != nil {
		return nil, stop, err
	}
	var peers, names []string
	for i, n := range nodes {
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", ports[i]))
		names = append(names, n.name)
	}
	for i, n := range nodes {
		cfg := pyvisor.Config{Python: python, Pools: n.pools, Cluster: pyvisor.ClusterConfig{
			Provider:    cluster.Automanaged,
			Name:        "bench",
			Node:        n.name,
			Host:        n.host,
			Automanaged: cluster.AutomanagedConfig{Port: ports[i], Peers: peers},
		}}
		startCtx, cancel := context.WithTimeout(ctx, readyWait)
		rt, err := pyvisor.Start(startCtx, cfg)
		cancel()
		if err != nil {
			return rts, stop, fmt.Errorf("start node %s: %w", n.name, err)
		}
		rts = append(rts, rt)
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
				return rts, stop, fmt.Errorf("node %s sees %v after 30s, want %v", rt.Node(), seen, names)
			}
			if err := ctx.Err(); err != nil {
				return rts, stop, err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return rts, stop, nil
}

// echoOn is the echo call of pool through rt, after checking that it runs on node
// wantNode (this node for a pool it runs and does not offer).
func echoOn(ctx context.Context, rt *pyvisor.Runtime, pool, wantNode string) (call, error) {
	var ran pyvisor.Ran
	if _, err := rt.Execute(ctx, pool, "echo", echoArgs, pyvisor.WithRan(&ran)); err != nil {
		return nil, err
	}
	if ran.Node != wantNode || ran.Worker == "" {
		return nil, fmt.Errorf("a call of pool %s from node %s ran at %+v, want node %q", pool, rt.Node(), ran, wantNode)
	}
	return func(ctx context.Context) error {
		_, err := rt.Execute(ctx, pool, "echo", echoArgs)
		return err
	}, nil
}

// workerChannel opens a bare Go channel client (call frames on a Channel stream of its
// own) to the Python process of worker 0 of rt's pool.
func workerChannel(ctx context.Context, rt *pyvisor.Runtime, pool string) (*reference.Channel, func(), error) {
	stats, err := rt.Stats(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, st := range stats {
		if st.Pool != pool {
			continue
		}
		if len(st.Workers) == 0 || st.Workers[0].State != "ready" {
			return nil, nil, fmt.Errorf("pool %s: worker 0 is not ready", pool)
		}
		conn, err := grpc.NewClient("unix://"+st.Workers[0].Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		ch, err := reference.OpenChannel(workerv1.NewWorkerServiceClient(conn))
		if err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
		return ch, func() { ch.Close(); _ = conn.Close() }, nil
	}
	return nil, nil, fmt.Errorf("node %s has no pool %s", rt.Node(), pool)
}

// completed is how many calls pool has finished on rt.
func completed(ctx context.Context, rt *pyvisor.Runtime, pool string) (uint64, error) {
	stats, err := rt.Stats(ctx)
	if err != nil {
		return 0, err
	}
	for _, st := range stats {
		if st.Pool == pool {
			return st.Completed, nil
		}
	}
	return 0, fmt.Errorf("node %s has no pool %s", rt.Node(), pool)
}

// goCPU is the user plus system CPU time of this process so far (not its children:
// the Python workers).
func goCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clusterCalls measures calls across the nodes of a cluster, all in this process (each
// runtime its own actor system and remote endpoint, on loopback: the hop crosses
// protoactor's remote over TCP, and no network).
//
// Latency: node a calls, sequentially and interleaved, a 1-worker pool it runs and does
// not offer to the cluster (the plain pool path), a 1-worker pool it offers and alone
// hosts (the cluster's routing, which picks a itself), and a 1-worker pool only node b
// hosts (the hop), with a bare Go channel client to a's and to b's worker for
// reference: the hop's cost is remote over local, raw, and corrected for the two
// Python processes' own speeds ((remote - bare b) - (local - bare a)).
//
// Throughput: -callers callers on a client node that runs no pool, calling a pool two
// other nodes host with 2 workers each, against the same callers on one local pool of
// 4 workers (a runtime without a cluster), in interleaved rounds.
func clusterCalls(ctx context.Context, s settings) error {
	if err := clusterLatency(ctx, s); err != nil {
		return err
	}
	return clusterThroughput(ctx, s)
}

func clusterLatency(ctx context.Context, s settings) (err error) {
	rts, stop, err := startCluster(ctx, s.python,
		clusterNode{name: "b", pools: []pyvisor.PoolConfig{namedPool("remote", 1)}},
		clusterNode{name: "a", pools: []pyvisor.PoolConfig{namedPool("local", 1), namedPool("self", 1)}, host: []string{"self"}},
	)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()
	b, a := rts[0], rts[1]
	local, err := echoOn(ctx, a, "local", "a")
	if err != nil {
		return err
	}
	self, err := echoOn(ctx, a, "self", "a")
	if err != nil {
		return err
	}
	remote, err := echoOn(ctx, a, "remote", "b")
	if err != nil {
		return err
	}
	bareA, closeA, err := workerChannel(ctx, a, "local")
	if err != nil {
		return err
	}
	defer closeA()
	bareB, closeB, err := workerChannel(ctx, b, "remote")
	if err != nil {
		return err
	}
	defer closeB()
	paths := []*path{
		{name: "bare channel -> a's local worker", call: bareA.Echo},
		{name: "local: a's pool, not in the cluster", call: local},
		{name: "self: a's pool in the cluster, routed to a", call: self},
		{name: "bare channel -> b's worker", call: bareB.Echo},
		{name: "remote: b's pool, called from a", call: remote},
	}
	const pBareA, pLocal, pSelf, pBareB, pRemote = 0, 1, 2, 3, 4
	if err := interleave(ctx, paths, s); err != nil {
		return err
	}

	fmt.Printf("\nCluster latency: 100-byte echo from node a, sequential, %d calls per path, in blocks of %d, paths in random order per round\n",
		s.calls, latencyBlock)
	fmt.Println("(two automanaged nodes in this process, remote endpoints on loopback; 1-worker pools; each bare Go channel client")
	fmt.Println(" calls the same Python process as the pool after it, on a channel of its own: the Python side's cost alone)")
	p50 := func(i int) time.Duration { return summarize(paths[i].d).p50 }
	w := table()
	fmt.Fprintln(w, "path\tp50\tp90\tp99\tmean\tcalls/s\tratio to local at p50\t")
	for _, p := range paths {
		st := summarize(p.d)
		fmt.Fprintf(w, "%s\t%.1f µs\t%.1f µs\t%.1f µs\t%.1f µs\t%.0f\t%.3f\t\n",
			p.name, us(st.p50), us(st.p90), us(st.p99), us(st.mean), 1/st.mean.Seconds(), float64(st.p50)/float64(p50(pLocal)))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	raw := p50(pRemote) - p50(pLocal)
	corrected := (p50(pRemote) - p50(pBareB)) - (p50(pLocal) - p50(pBareA))
	fmt.Printf("remote p50 / local p50 = %.2f; the hop adds %+.1f µs at p50 (%+.1f µs corrected for the two Python processes)\n",
		float64(p50(pRemote))/float64(p50(pLocal)), us(raw), us(corrected))
	fmt.Printf("self p50 / local p50 = %.2f (a pool offered to the cluster, called on its own node)\n",
		float64(p50(pSelf))/float64(p50(pLocal)))
	return nil
}

func clusterThroughput(ctx context.Context, s settings) (err error) {
	const hostWorkers = 2
	rts, stop, err := startCluster(ctx, s.python,
		clusterNode{name: "host1", pools: []pyvisor.PoolConfig{namedPool(poolName, hostWorkers)}},
		clusterNode{name: "host2", pools: []pyvisor.PoolConfig{namedPool(poolName, hostWorkers)}},
		clusterNode{name: "client"},
	)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()
	hosts, client := rts[:2], rts[2]
	rt, err := startRuntime(ctx, s.python, 2*hostWorkers)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopRuntime(rt)) }()
	configs := []struct {
		name  string
		call  call
		rates []float64
		cpu   []float64 // Go CPU per call, µs
	}{
		{name: fmt.Sprintf("cluster: client -> 2 nodes x %d workers", hostWorkers), call: poolCall(client)},
		{name: fmt.Sprintf("local pool, %d workers, no cluster", 2*hostWorkers), call: poolCall(rt)},
	}
	// Warm up: a short round each, not recorded.
	for _, c := range configs {
		if _, err := rate(ctx, c.call, s.callers, min(s.tpDuration, 200*time.Millisecond)); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	var before []uint64
	for _, h := range hosts {
		n, err := completed(ctx, h, poolName)
		if err != nil {
			return err
		}
		before = append(before, n)
	}
	for range s.tpRounds {
		for i := range configs {
			cpu, t := goCPU(), time.Now()
			r, err := rate(ctx, configs[i].call, s.callers, s.tpDuration)
			if err != nil {
				return fmt.Errorf("%s: %w", configs[i].name, err)
			}
			calls := r * time.Since(t).Seconds()
			configs[i].rates = append(configs[i].rates, r)
			configs[i].cpu = append(configs[i].cpu, us(goCPU()-cpu)/calls)
		}
	}
	var served []uint64
	var total uint64
	for i, h := range hosts {
		n, err := completed(ctx, h, poolName)
		if err != nil {
			return err
		}
		served = append(served, n-before[i])
		total += n - before[i]
	}

	fmt.Printf("\nCluster throughput: 100-byte echo, %d concurrent callers, median of %d interleaved rounds of %v\n",
		s.callers, s.tpRounds, s.tpDuration)
	fmt.Println("(the client node runs no pool; all nodes, the local runtime and their Python workers share this machine's cores;")
	fmt.Println(" Go CPU is this process's, all nodes', per call)")
	w := table()
	fmt.Fprintln(w, "config\tcalls/s\tmin\tmax\tGo CPU per call\t")
	for _, c := range configs {
		lo, hi := minMax(c.rates)
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.0f\t%.0f µs\t\n", c.name, median(c.rates), lo, hi, median(c.cpu))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("cluster / local pool = %.2f; calls served by host1 %d, host2 %d (host1 %.0f %%)\n",
		median(configs[0].rates)/median(configs[1].rates), served[0], served[1], 100*float64(served[0])/float64(max(total, 1)))
	return nil
}
