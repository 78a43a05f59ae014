package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/cluster"
	"github.com/pyvisor/pyvisor/internal/freeport"
	"github.com/pyvisor/pyvisor/internal/spanfile"
	"github.com/pyvisor/pyvisor/internal/spantree"
	"github.com/pyvisor/pyvisor/telemetry"
)

// The cluster demo (-cluster): this process is node "client", running no pool; it starts
// two more node processes, gpu-1 and gpu-2, each hosting pool "shared" (2 workers), on
// loopback with the automanaged provider, and calls the pool from here: calls spread
// over both, a stream, a session, then gpu-1 is SIGKILLed under load and restarted, then
// a rolling upgrade of the pool, node by node, while callers here keep calling it (see
// rollingUpgrade), and one call's trace is printed across the three processes.

// sharedPool is the pool the two hosting nodes run.
const sharedPool = "shared"

// hostingNodes are the nodes that run pool shared, in the order the rolling upgrade takes.
var hostingNodes = []string{"gpu-1", "gpu-2"}

const (
	// rollingCallers make back-to-back calls of pool shared from node client throughout
	// the rolling upgrade: two per worker of the cluster's pool.
	rollingCallers = 8
	// nodeUpgradeTimeout bounds the wait for one node's reload.
	nodeUpgradeTimeout = 30 * time.Second
)

// nodeReport is a line a node process writes on stdout, for the demo: one when it serves
// (event "serving"), then one after each reload SIGHUP asked for (event "reloaded").
type nodeReport struct {
	Node    string `json:"node"`
	Event   string `json:"event"`
	PIDs    []int  `json:"pids"`    // its Python workers, now
	Version string `json:"version"` // the code version they run, now
	// Of a reload:
	Before string        `json:"version_before,omitempty"`
	Took   time.Duration `json:"took,omitempty"`
	Err    string        `json:"error,omitempty"` // ReloadAs's error: the old code serves on
}

// nodeProc is a node process the demo started.
type nodeProc struct {
	name, spans string
	cmd         *exec.Cmd
	pids        []int      // every Python worker it reported: they must all be gone at the end
	last        nodeReport // its latest report
	reports     chan nodeReport
	done        chan struct{}
}

// clusterDemo runs the cluster scenario; the exit status as run's.
func clusterDemo(ctx context.Context, log zerolog.Logger) int {
	dir, err := os.MkdirTemp("", "pyvisor-cluster-demo-")
	if err != nil {
		log.Error().Err(err).Msg("demo: temp dir")
		return 1
	}
	defer os.RemoveAll(dir)
	ports, err := freeport.Take(3)
	if err != nil {
		log.Error().Err(err).Msg("demo: free ports")
		return 1
	}
	peers := make([]string, len(ports))
	for i, p := range ports {
		peers[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	hosting := func(name string, port int) nodeFlags {
		return nodeFlags{
			bind: fmt.Sprintf("127.0.0.1:%d", must(freeport.Take(1))[0]), // fixed: a restart comes back at the same address
			port: port, peers: strings.Join(peers, ","), spans: filepath.Join(dir, name+".spans"),
			reloadAs: upgradeVersion,
		}
	}

	spans, err := spanfile.Create(filepath.Join(dir, "client.spans"), "client")
	if err != nil {
		log.Error().Err(err).Msg("demo: spans")
		return 1
	}
	tp, err := telemetry.TracerProvider(ctx, sdktrace.NewSimpleSpanProcessor(spans))
	if err != nil {
		log.Error().Err(err).Msg("demo: tracing")
		return 2
	}
	defer tp.Shutdown(context.Background())

	began := time.Now()
	log.Info().Strs("peers", peers).Msg("starting nodes gpu-1 and gpu-2 (processes of their own, pool shared: 2 workers each) and this one, client (no pool)")
	nodes := map[string]*nodeProc{}
	for i, name := range []string{"gpu-1", "gpu-2"} {
		n, err := startNodeProc(ctx, dir, name, hosting(name, ports[i+1]), log)
		if err != nil {
			log.Error().Err(err).Msg("demo: node did not start")
			killAll(nodes)
			return 1
		}
		nodes[name] = n
	}
	defer killAll(nodes)
	rt, err := pyvisor.Start(ctx, pyvisor.Config{Cluster: section("client", nodeFlags{bind: "127.0.0.1:0", port: ports[0], peers: strings.Join(peers, ",")})},
		pyvisor.WithLogger(log), pyvisor.WithTracerProvider(tp), pyvisor.WithPropagator(telemetry.Propagator()))
	if err != nil {
		log.Error().Err(err).Msg("demo: the client node did not start")
		return 1
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = rt.Stop(context.Background())
		}
	}()
	if err := waitMembers(ctx, rt, "client", "gpu-1", "gpu-2"); err != nil {
		log.Error().Err(err).Msg("demo: the nodes did not meet")
		return 1
	}
	log.Info().Strs("members", rt.Members()).Stringer("took", time.Since(began).Round(time.Millisecond)).Msg("the cluster is up")

	c := &clusterScenario{rt: rt, log: log, tally: newTally()}
	ok := c.spread(ctx, "demo-cluster-add") &&
		c.stream(ctx) &&
		c.session(ctx) &&
		c.killUnderLoad(ctx, nodes) &&
		c.restart(ctx, dir, nodes, hosting("gpu-1", ports[1])) &&
		c.rollingUpgrade(ctx, nodes)

	stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stopErr := rt.Stop(stopCtx)
	stopped = true
	for _, n := range nodes {
		n.stop(log)
	}
	_ = tp.Shutdown(context.Background())
	if ctx.Err() == nil {
		c.printTrace(os.Stderr, dir, "demo-cluster-add", nodes)
	}
	var leftover []int
	for _, n := range nodes {
		leftover = append(leftover, alive(pidSet(n.pids))...)
	}
	leftover = append(leftover, alive(pidSet(c.killedPIDs))...)
	fmt.Printf("\ncluster demo: %d calls (%d ok), errors by kind %s, p50 %s, wall %s\n", c.tally.calls, len(c.tally.latencies),
		counts(c.tally.errors), round(c.tally.percentile(50)), round(time.Since(began)))
	fmt.Printf("  calls by node: %s\n", counts(c.byNode))
	fmt.Printf("  gpu-1 killed under load: %s; its Python workers gone %s after the kill; back after a restart in %s\n",
		counts(c.killOutcomes), round(c.workersGone), round(c.rejoin))
	c.rolled.write(os.Stdout)
	fmt.Printf("  Python processes left: %d\n", len(leftover))
	switch {
	case ctx.Err() != nil:
		return 130
	case !ok || stopErr != nil || len(leftover) > 0 || len(c.tally.failures) > 0:
		for _, f := range c.tally.failures {
			fmt.Println("  unexpected:", f)
		}
		return 1
	}
	return 0
}

// clusterScenario is the cluster demo's calls and what came of them.
type clusterScenario struct {
	rt           *pyvisor.Runtime
	log          zerolog.Logger
	tally        *tally
	byNode       map[string]int
	killOutcomes map[string]int
	killedPIDs   []int
	workersGone  time.Duration
	rejoin       time.Duration
	rolled       rollingReport
	mu           sync.Mutex
}

// call runs one add from this node and says where it ran.
func (c *clusterScenario) call(ctx context.Context, cid string, tool string, args any, opts ...pyvisor.CallOption) (pyvisor.Result, pyvisor.Ran, error) {
	var ran pyvisor.Ran
	ctx, cancel := context.WithTimeout(telemetry.WithCorrelationID(ctx, cid), 5*time.Second)
	defer cancel()
	began := time.Now()
	res, err := c.rt.Execute(ctx, sharedPool, tool, args, append(opts, pyvisor.WithRan(&ran))...)
	c.tally.record(time.Since(began), err)
	return res, ran, err
}

// spread makes 20 calls from here: both hosting nodes serve them.
func (c *clusterScenario) spread(ctx context.Context, cid string) bool {
	c.byNode = map[string]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("%s-%d", cid, i)
			if i == 0 {
				id = cid // the call whose trace is printed
			}
			_, ran, err := c.call(ctx, id, "add", map[string]int{"a": i, "b": 1})
			if err == nil {
				c.mu.Lock()
				c.byNode[ran.Node]++
				c.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	c.log.Info().Str("by_node", counts(c.byNode)).Msg("20 calls of pool shared from client, concurrently: both hosting nodes serve them")
	return c.tally.expect(len(c.byNode) == 2, "calls on both hosting nodes")
}

func (c *clusterScenario) stream(ctx context.Context) bool {
	n := 0
	for _, err := range c.rt.Stream(ctx, sharedPool, "count", map[string]int{"n": 40}) {
		if err != nil {
			c.log.Error().Err(err).Msg("stream across nodes")
			return c.tally.expect(false, "a stream across nodes")
		}
		n++
	}
	c.log.Info().Int("chunks", n).Msg("a stream of 40 chunks from a hosting node, in order")
	return c.tally.expect(n == 40, "40 chunks")
}

func (c *clusterScenario) session(ctx context.Context) bool {
	_, set, err := c.call(ctx, "demo-cluster-session", "session_set", map[string]any{"key": "user", "value": "ada"}, pyvisor.WithSession("s-42"))
	if err != nil {
		return c.tally.expect(false, "session_set")
	}
	for range 3 {
		res, got, err := c.call(ctx, "demo-cluster-session", "session_get", map[string]any{"key": "user"}, pyvisor.WithSession("s-42"))
		if err != nil || got.Node != set.Node || string(res.JSON) != `"ada"` {
			return c.tally.expect(false, "the session stays on its node")
		}
	}
	c.log.Info().Str("node", set.Node).Str("worker", set.Worker).Msg("session s-42 stays on one node: its state is there")
	return true
}

// killUnderLoad SIGKILLs gpu-1 while 16 calls run (half idempotent): each ends with a
// result or ErrNodeLost; calls after it go to gpu-2; gpu-1's workers are gone.
func (c *clusterScenario) killUnderLoad(ctx context.Context, nodes map[string]*nodeProc) bool {
	c.killOutcomes = map[string]int{}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var opts []pyvisor.CallOption
			if i%2 == 0 {
				opts = append(opts, pyvisor.Idempotent())
			}
			_, _, err := c.call(ctx, fmt.Sprintf("demo-cluster-load-%d", i), "sleep", map[string]float64{"seconds": 0.4}, opts...)
			kind := "ok"
			switch {
			case errors.Is(err, pyvisor.ErrNodeLost):
				kind = "node_lost"
			case err != nil:
				kind = "other"
			}
			c.mu.Lock()
			c.killOutcomes[kind]++
			c.mu.Unlock()
		}()
	}
	time.Sleep(250 * time.Millisecond)
	gpu1 := nodes["gpu-1"]
	c.log.Warn().Int("pid", gpu1.cmd.Process.Pid).Msg("SIGKILL to node gpu-1, 16 calls in flight on gpu-1 and gpu-2")
	killed := time.Now()
	_ = gpu1.cmd.Process.Signal(syscall.SIGKILL)
	<-gpu1.done
	for len(alive(pidSet(gpu1.pids))) > 0 && time.Since(killed) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	c.workersGone = time.Since(killed)
	c.killedPIDs = gpu1.pids
	wg.Wait()
	c.log.Info().Str("outcomes", counts(c.killOutcomes)).Stringer("workers_gone_after", round(c.workersGone)).
		Msg("every call ended: with its result (idempotent ones retried on gpu-2) or ErrNodeLost")
	ok := c.tally.expect(c.killOutcomes["other"] == 0, "only results and ErrNodeLost after the kill")
	for range 4 {
		_, ran, err := c.call(ctx, "demo-cluster-after-kill", "add", map[string]int{"a": 1, "b": 1})
		ok = c.tally.expect(err == nil && ran.Node == "gpu-2", "calls after the kill go to gpu-2") && ok
	}
	c.log.Info().Strs("members", c.rt.Members()).Msg("calls go on, on gpu-2")
	return ok
}

// restart starts gpu-1 again: it joins, and takes calls again without a restart of the
// others.
func (c *clusterScenario) restart(ctx context.Context, dir string, nodes map[string]*nodeProc, cfg nodeFlags) bool {
	began := time.Now()
	n, err := startNodeProc(ctx, dir, "gpu-1", cfg, c.log)
	if err != nil {
		c.log.Error().Err(err).Msg("restart gpu-1")
		return false
	}
	nodes["gpu-1"] = n
	for time.Since(began) < 20*time.Second && ctx.Err() == nil {
		c.byNode = map[string]int{}
		if c.spread(ctx, "demo-cluster-rejoin") {
			c.rejoin = time.Since(began)
			c.log.Info().Stringer("took", round(c.rejoin)).Msg("gpu-1 is back and serving, without a restart of the others")
			return true
		}
		c.tally.mu.Lock()
		c.tally.failures = c.tally.failures[:len(c.tally.failures)-1] // not yet: try again
		c.tally.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	return c.tally.expect(false, "gpu-1 serves again after its restart")
}

// printTrace prints the trace of the call with correlation id cid, from the spans of
// every process: this one's and the nodes'.
func (c *clusterScenario) printTrace(w io.Writer, dir, cid string, nodes map[string]*nodeProc) {
	paths := []string{filepath.Join(dir, "client.spans")}
	for _, n := range nodes {
		paths = append(paths, n.spans)
	}
	paths = append(paths, filepath.Join(dir, "gpu-1.spans.0"))
	all, err := spanfile.Read("", paths...)
	if err != nil {
		return
	}
	trace := ""
	for _, s := range all {
		if s.Name == "execute add" && s.Attrs["pyvisor.correlation_id"] == cid {
			trace = s.Trace
		}
	}
	var spans []spantree.Span
	for _, s := range all {
		if s.Trace == trace {
			spans = append(spans, s)
		}
	}
	if len(spans) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, line := range spantree.Render(spans, fmt.Sprintf("trace %s: one call from node client into a Python worker on another node (correlation id %s)", trace, cid)) {
		fmt.Fprintln(w, line)
	}
}

// nodeFlags are what a node process is told: where it listens, who its peers are, and the
// version label of the reloads SIGHUP asks for ("": the hash of the code on disk).
type nodeFlags struct {
	bind, peers, spans, reloadAs string
	port                         int
}

// section is the cluster section of node name.
func section(name string, f nodeFlags) pyvisor.ClusterConfig {
	return pyvisor.ClusterConfig{Provider: cluster.Automanaged, Node: name, Bind: f.bind,
		Automanaged: cluster.AutomanagedConfig{Port: f.port, Peers: strings.Split(f.peers, ","), Refresh: 500 * time.Millisecond}}
}

// startNodeProc starts this program as node name and waits until it serves.
func startNodeProc(ctx context.Context, dir, name string, f nodeFlags, log zerolog.Logger) (*nodeProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	n := &nodeProc{name: name, spans: f.spans, reports: make(chan nodeReport, 4), done: make(chan struct{})}
	if _, err := os.Stat(n.spans); err == nil { // a restart: keep the first run's spans
		_ = os.Rename(n.spans, n.spans+".0")
	}
	n.cmd = exec.CommandContext(ctx, self, "-node", name, "-node-bind", f.bind, "-node-port", fmt.Sprint(f.port),
		"-node-peers", f.peers, "-node-spans", f.spans, "-node-reload-as", f.reloadAs)
	n.cmd.Stderr = os.Stderr // its log lines, with node=name
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		defer close(n.done)
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			var r nodeReport
			err := json.Unmarshal(sc.Bytes(), &r)
			n.pids, n.last = r.PIDs, r
			ready <- err
		} else {
			ready <- fmt.Errorf("node %s exited before it served", name)
		}
		for sc.Scan() { // its reload reports
			var r nodeReport
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				select {
				case n.reports <- r:
				default: // nobody waits for it
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = n.cmd.Wait()
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-time.After(60 * time.Second):
		_ = n.cmd.Process.Kill()
		return nil, fmt.Errorf("node %s not serving after 60s", name)
	}
	log.Info().Str("node", name).Int("pid", n.cmd.Process.Pid).Ints("python_pids", n.pids).Msg("node process serving")
	return n, nil
}

// stop stops a node process gracefully (SIGTERM) and waits for it.
func (n *nodeProc) stop(log zerolog.Logger) {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		log.Warn().Str("node", n.name).Msg("node did not stop in 30s: killing it")
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

func killAll(nodes map[string]*nodeProc) {
	for _, n := range nodes {
		select {
		case <-n.done:
		default:
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}

// runNode is this program as a node process (-node): it hosts pool shared (2 workers)
// until SIGTERM, and reloads it on SIGHUP (see reloadNode).
func runNode(ctx context.Context, name string, f nodeFlags, log zerolog.Logger) int {
	cfg := pyvisor.Config{Pools: []pyvisor.PoolConfig{{Name: sharedPool, Tools: []string{"pyvisor_worker.examples"}, Workers: 2}},
		Cluster: section(name, f)}
	spans, err := spanfile.Create(f.spans, name)
	if err != nil {
		log.Error().Err(err).Msg("node: spans")
		return 1
	}
	tp, err := telemetry.TracerProvider(ctx, sdktrace.NewSimpleSpanProcessor(spans))
	if err != nil {
		log.Error().Err(err).Msg("node: tracing")
		return 2
	}
	defer tp.Shutdown(context.Background())
	rt, err := pyvisor.Start(ctx, cfg, pyvisor.WithLogger(log), pyvisor.WithTracerProvider(tp),
		pyvisor.WithPropagator(telemetry.Propagator()), pyvisor.WithPythonSpans(spans.Python))
	if err != nil {
		log.Error().Err(err).Msg("node: start")
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before it says it serves: from then on SIGHUP reloads
	defer signal.Stop(hup)
	ready := nodeReport{Node: name, Event: "serving"}
	ready.Version, ready.PIDs = poolNow(ctx, rt)
	report(ready)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			reloadNode(ctx, rt, name, f.reloadAs, log)
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rt.Stop(stopCtx); err != nil {
		log.Error().Err(err).Msg("node: stop")
		return 1
	}
	return 0
}

// reloadNode rolls pool shared's code through its workers, one at a time (ReloadAs with
// version label as the workers' version, or Reload's hash of the code on disk with none),
// then logs the result and reports it on stdout for the demo, which waits for it before it
// upgrades the next node.
//
// The demo's tools are the installed package pyvisor_worker.examples, so the code on disk
// does not change between the versions: what rolls through the pool is new Python
// processes loading it again, and the label (demo-v2) names that rollout, as a deploy
// names its release. A node of a real deployment, whose files the deploy has just
// changed, would wire rt.ReloadOnSignal(ctx) instead: the same Reload on SIGHUP, with its
// result in the node's log (docs/upgrades.md, "Across nodes").
func reloadNode(ctx context.Context, rt *pyvisor.Runtime, name, label string, log zerolog.Logger) {
	log = log.With().Str("node", name).Str("pool", sharedPool).Logger()
	before, _ := poolNow(ctx, rt)
	msg := "SIGHUP: reloading pool shared from the tool code on disk, one worker at a time"
	if label != "" {
		msg = "SIGHUP: reloading pool shared as " + label + ", one worker at a time (the example tools' code on disk " +
			"is unchanged: the label names this rollout of fresh Python processes, as a deploy names its release)"
	}
	log.Info().Str("version", before).Str("to", cmp.Or(label, "the hash of the code on disk")).Msg(msg)
	began := time.Now()
	err := rt.ReloadAs(ctx, sharedPool, label)
	r := nodeReport{Node: name, Event: "reloaded", Before: before, Took: time.Since(began)}
	r.Version, r.PIDs = poolNow(ctx, rt)
	if err != nil {
		r.Err = err.Error()
		log.Error().Err(err).Str("version", r.Version).Msg("reload failed (ErrRolledBack: the old code serves on)")
	} else {
		log.Info().Str("version_before", before).Str("version_after", r.Version).
			Ints("python_pids", r.PIDs).Stringer("took", round(r.Took)).Msg("reloaded: every worker of pool shared runs the new version")
	}
	report(r)
}

// poolNow is the code version the workers of pool shared run and their processes.
func poolNow(ctx context.Context, rt *pyvisor.Runtime) (version string, pids []int) {
	stats, err := rt.Stats(ctx)
	if err != nil || len(stats) == 0 {
		return "none", nil
	}
	for _, w := range stats[0].Workers {
		pids = append(pids, w.PID)
	}
	return versions(stats[0]), pids
}

// report writes r on stdout, one line of JSON, for the demo that started this node.
func report(r nodeReport) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

func waitMembers(ctx context.Context, rt *pyvisor.Runtime, names ...string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got := rt.Members()
		slices.Sort(got)
		want := slices.Clone(names)
		slices.Sort(want)
		if slices.Equal(got, want) {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("members %s after 30s, want %s", strings.Join(rt.Members(), ", "), strings.Join(names, ", "))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func pidSet(pids []int) map[int]bool {
	out := map[int]bool{}
	for _, p := range pids {
		out[p] = true
	}
	return out
}
