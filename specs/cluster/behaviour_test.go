package cluster_test

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	ch "github.com/pyvisor/pyvisor/specs/internal/clusterharness"
)

type (
	node    = ch.Node
	command = ch.Command
	answer  = ch.Answer
)

// trio is three nodes of one cluster:
//
//	a runs alpha;
//	b runs beta, shared (affinity hint, 2 workers) and pinned (affinity strict);
//	c runs gamma, shared and pinned.
type trio struct {
	a, b, c *node
	pids    []int // every Python worker seen, checked gone at the end
}

// clusterSection is a node's cluster config, for its name.
type clusterSection func(name string) map[string]any

func nodeConfig(name string, cluster clusterSection, pools ...map[string]any) map[string]any {
	section := maps.Clone(cluster(name))
	section["node"] = name
	// A fixed port: a node restarted comes back at the same address, as in a rolling
	// restart.
	section["bind"] = fmt.Sprintf("127.0.0.1:%d", ch.FreePorts(1)[0])
	return map[string]any{
		"pools":        pools,
		"metrics":      map[string]any{"enabled": true, "address": "127.0.0.1:0"},
		"cluster":      section,
		"stop_timeout": "20s",
	}
}

func startTrio(cluster clusterSection) *trio {
	t := &trio{}
	var wg sync.WaitGroup
	start := func(n **node, name string, pools ...map[string]any) {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			*n = launcher.Start(name, nodeConfig(name, cluster, pools...))
		}()
	}
	start(&t.a, "a", ch.Pool("alpha"))
	start(&t.b, "b", ch.Pool("beta"), ch.Pool("shared", "workers", 2), ch.Pool("pinned", "affinity", "strict"))
	start(&t.c, "c", ch.Pool("gamma"), ch.Pool("shared", "workers", 2), ch.Pool("pinned", "affinity", "strict"))
	wg.Wait()
	DeferCleanup(t.stopAll) // registered before anything can fail: no node outlives the container
	for _, n := range t.all() {
		Eventually(n.Members).Should(ConsistOf("a", "b", "c"), "members as node %s sees them", n.Name)
		t.pids = append(t.pids, n.PIDs()...)
	}
	return t
}

func (t *trio) all() []*node { return []*node{t.a, t.b, t.c} }

// stopAll stops the nodes still running; every Python worker any of them ran is gone.
func (t *trio) stopAll() {
	for _, n := range t.all() {
		if n == nil {
			continue
		}
		select {
		case <-n.Exited:
		default:
			t.pids = append(t.pids, n.PIDs()...)
			n.Stop()
		}
	}
	Eventually(func() []int {
		var left []int
		for _, pid := range t.pids {
			if ch.Alive(pid) {
				left = append(left, pid)
			}
		}
		return left
	}).WithTimeout(5*time.Second).Should(BeEmpty(), "Python workers left behind")
}

// nodeOf is the node a call's worker ran on ("b/shared-1" is b).
func nodeOf(a answer) string {
	node, _, _ := strings.Cut(a.Worker, "/")
	return node
}

func add(from *node, pool string) answer {
	return from.Call(command{Pool: pool, Tool: "add", Args: map[string]int{"a": 1, "b": 2}})
}

// clusterLines are n's log lines about the cluster's members.
func clusterLines(n *node) []string {
	var out []string
	for _, l := range ch.LogLines(n) {
		if msg := fmt.Sprint(l["message"]); strings.HasPrefix(msg, "cluster node") {
			out = append(out, fmt.Sprintf("%v %s peer=%v why=%v", l["time"], msg, l["peer"], l["why"]))
		}
	}
	return out
}

func scrape(n *node) string {
	res, err := http.Get("http://" + n.Ready.Metrics + "/metrics")
	Expect(err).NotTo(HaveOccurred())
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// behavesAsOneCluster is what a cluster of three nodes promises, whatever its provider.
// It runs in an Ordered container: the nodes live across its specs, and its last specs
// kill, restart and stop them.
func behavesAsOneCluster(t **trio) {
	It("lets every node call the pools hosted only on the others, by name", func() {
		hosts := map[string]*node{"alpha": (*t).a, "beta": (*t).b, "gamma": (*t).c}
		for _, from := range (*t).all() {
			for pool, host := range hosts {
				if host == from {
					continue
				}
				a := add(from, pool)
				Expect(a.Error).To(BeEmpty(), "%s -> %s", from.Name, pool)
				Expect(a.Result).To(MatchJSON("3"))
				Expect(nodeOf(a)).To(Equal(host.Name), "%s -> %s ran on %s", from.Name, pool, a.Worker)
			}
		}
	})

	It("treats a pool hosted on two nodes as one pool, and sends calls to the node with free workers over a busy one", func() {
		a := (*t).a
		// b's two shared workers busy: two calls in a session that lives on b (a session
		// goes to its node; there, with affinity hint, to any free worker).
		session := ""
		for i := 0; session == "" && i < 100; i++ {
			s := fmt.Sprint("on-b-", i)
			if got := a.Call(command{Pool: "shared", Tool: "add", Args: map[string]int{"a": 1, "b": 1}, Session: s}); nodeOf(got) == "b" {
				session = s
			}
		}
		Expect(session).NotTo(BeEmpty(), "a session whose node is b")
		var busy []<-chan answer
		for range 2 {
			busy = append(busy, a.Send(command{Op: "call", Pool: "shared", Tool: "sleep", Args: map[string]float64{"seconds": 2.5}, TimeoutMS: 10_000, Session: session}))
		}
		time.Sleep(800 * time.Millisecond) // the gossip carries b's load to a
		for range 2 {
			got := add(a, "shared")
			Expect(got.Error).To(BeEmpty())
			Expect(nodeOf(got)).To(Equal("c"), "c has free workers, b none")
		}
		for _, ch := range busy {
			Eventually(ch).WithTimeout(10 * time.Second).Should(Receive(HaveField("Error", BeEmpty())))
		}
		// Both nodes serve calls of the pool.
		var calls []<-chan answer
		for range 8 {
			calls = append(calls, a.Send(command{Op: "call", Pool: "shared", Tool: "sleep", Args: map[string]float64{"seconds": 0.3}, TimeoutMS: 10_000}))
		}
		seen := map[string]int{}
		for _, ch := range calls {
			var got answer
			Eventually(ch).Should(Receive(&got))
			Expect(got.Error).To(BeEmpty())
			seen[nodeOf(got)]++
		}
		Expect(seen).To(HaveKey("b"))
		Expect(seen).To(HaveKey("c"))
	})

	DescribeTable("keeps a session on one node for its life, whichever node calls, in both affinity modes",
		func(pool string) {
			for i := range 6 {
				session := fmt.Sprintf("%s-session-%d", pool, i)
				set := (*t).a.Call(command{Pool: pool, Tool: "session_set", Args: map[string]any{"key": "k", "value": i}, Session: session})
				Expect(set.Error).To(BeEmpty())
				for _, from := range (*t).all() {
					got := from.Call(command{Pool: pool, Tool: "session_get", Args: map[string]any{"key": "k"}, Session: session})
					Expect(got.Error).To(BeEmpty())
					Expect(got.Result).To(MatchJSON(fmt.Sprint(i)), "session %s read from %s", session, from.Name)
					Expect(nodeOf(got)).To(Equal(nodeOf(set)))
				}
			}
		},
		Entry("affinity hint", "shared"),
		Entry("affinity strict", "pinned"),
	)

	It("streams a tool's chunks across nodes, in order, past the stream window", func() {
		got := (*t).a.Call(command{Pool: "beta", Tool: "count", Args: map[string]int{"n": 100}, Stream: true})
		Expect(got.Error).To(BeEmpty())
		Expect(got.Chunks).To(HaveLen(100))
		for i, c := range got.Chunks {
			Expect(c).To(MatchJSON(fmt.Sprintf(`{"i": %d}`, i)))
		}
	})

	It("keeps errors typed across nodes: unknown tool, tool exception, deadline, unknown pool", func() {
		a := (*t).a
		Expect(a.Call(command{Pool: "beta", Tool: "nope"}).Kind).To(Equal("unknown_tool"))
		raised := a.Call(command{Pool: "beta", Tool: "raise", Args: map[string]string{"message": "bad input", "type": "KeyError"}})
		Expect(raised.Kind).To(Equal("tool_error:KeyError"))
		Expect(raised.Error).To(ContainSubstring("on node b"))
		late := a.Call(command{Pool: "beta", Tool: "sleep", Args: map[string]float64{"seconds": 5}, TimeoutMS: 300})
		Expect(late.Kind).To(Equal("deadline_exceeded"))
		Expect(late.TookMS).To(BeNumerically("<", 1000))
		Expect(a.Call(command{Pool: "nowhere", Tool: "add"}).Kind).To(Equal("unknown_pool"))
	})

	It("makes one trace of a call, from the calling node through the remote hop into the hosting node's Python tool", func() {
		a, b := (*t).a, (*t).b
		got := add(a, "beta")
		Expect(got.Error).To(BeEmpty())
		Eventually(func() []string {
			for _, s := range ch.TraceOf(got.Trace, a, b) {
				if s.Name == "tool add" {
					return ch.Ancestry(ch.TraceOf(got.Trace, a, b), s)
				}
			}
			return nil
		}).Should(Equal([]string{
			"a: client add",
			"a: execute add",
			"a: remote add", // CLIENT, on the calling node
			"b: remote add", // SERVER, on the hosting node: its parent came across in the envelope's headers
			"b: receive Execute",
			"b: pyvisor.worker.v1.WorkerService/Execute",
			"pyvisor-worker@b: /pyvisor.worker.v1.WorkerService/Execute",
			"pyvisor-worker@b: tool add",
		}))
	})

	It("logs the call's correlation id on every node it crosses, Go and Python lines alike", func() {
		a, b := (*t).a, (*t).b
		cid := fmt.Sprintf("cluster-cid-%d", GinkgoRandomSeed())
		got := a.Call(command{Pool: "beta", Tool: "log", Args: map[string]string{"message": "hello from b"}, CID: cid})
		Expect(got.Error).To(BeEmpty())
		withCID := func(n *node) []string {
			var msgs []string
			for _, l := range ch.LogLines(n) {
				if l["correlation_id"] == cid {
					msgs = append(msgs, fmt.Sprint(l["message"]))
				}
			}
			return msgs
		}
		Eventually(func() []string { return withCID(b) }).Should(ContainElements("remote call received", "hello from b"))
		Expect(withCID(a)).To(ContainElement("remote call sent"))
	})

	It("serves metrics labelled with the node, and the cluster's own: members and remote calls both ways", func() {
		Expect(add((*t).a, "beta").Error).To(BeEmpty())
		Eventually(func() string { return scrape((*t).a) }).Should(And(
			MatchRegexp(`pyvisor_cluster_members\{[^}]*node="a"[^}]*\} 3`),
			MatchRegexp(`pyvisor_remote_calls_total\{[^}]*direction="out"[^}]*node="a"[^}]*outcome="ok"[^}]*peer="b"[^}]*pool="beta"`),
			MatchRegexp(`pyvisor_remote_call_duration_seconds_count\{[^}]*direction="out"`),
		))
		docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
		Expect(err).NotTo(HaveOccurred())
		dashboard, err := os.ReadFile(filepath.Join("..", "..", "docs", "monitoring", "grafana-dashboard.json"))
		Expect(err).NotTo(HaveOccurred())
		alerts, err := os.ReadFile(filepath.Join("..", "..", "docs", "monitoring", "alerts.yml"))
		Expect(err).NotTo(HaveOccurred())
		for _, family := range []string{"pyvisor_cluster_members", "pyvisor_cluster_node_losses_total", "pyvisor_remote_calls_total", "pyvisor_remote_call_duration_seconds"} {
			Expect(scrape((*t).a)).To(ContainSubstring("# TYPE "+family+" "), "a node's scrape has %s", family)
			Expect(string(docs)).To(ContainSubstring(family), "docs/metrics.md documents %s", family)
			Expect(string(dashboard)+string(alerts)).To(ContainSubstring(family), "the dashboard or the alerts use %s", family)
		}
		Eventually(func() string { return scrape((*t).b) }).Should(And(
			MatchRegexp(`pyvisor_remote_calls_total\{[^}]*direction="in"[^}]*node="b"[^}]*outcome="ok"[^}]*peer="a"[^}]*pool="beta"`),
			MatchRegexp(`pyvisor_workers\{[^}]*node="b"`),
		))
	})

	It("ends every call of a node SIGKILLed under load within its deadline, with a result or a typed error (ErrNodeLost, or the deadline); idempotent ones are retried on the survivor; the node's Python workers are gone within 2 s", func() {
		a, b := (*t).a, (*t).b
		workers := b.PIDs()
		Expect(workers).NotTo(BeEmpty())
		// One call on b's beta worker that ignores cancellation: it must not keep the worker alive.
		long := a.Send(command{Op: "call", Pool: "beta", Tool: "ignore_cancel_sync", Args: map[string]float64{"seconds": 30}, TimeoutMS: 40_000})
		var calls []<-chan answer
		for i := range 12 {
			calls = append(calls, a.Send(command{Op: "call", Pool: "shared", Tool: "sleep", Args: map[string]float64{"seconds": 0.5}, TimeoutMS: 4000, Idempotent: i%2 == 0}))
		}
		time.Sleep(300 * time.Millisecond)
		b.Kill()
		killed := time.Now()
		Eventually(func() []int {
			var left []int
			for _, pid := range workers {
				if ch.Alive(pid) {
					left = append(left, pid)
				}
			}
			return left
		}).WithTimeout(2*time.Second).WithPolling(20*time.Millisecond).Should(BeEmpty(), "b's Python workers after SIGKILL of b")
		fmt.Fprintf(GinkgoWriter, "b's workers gone %v after the kill\n", time.Since(killed))
		var lost answer
		Eventually(long).WithTimeout(2*time.Second).Should(Receive(&lost), "the long call on b ends when b is lost, not at its deadline")
		Expect(lost.Kind).To(Equal("node_lost"))
		kinds := map[string]int{}
		for i, ch := range calls {
			var got answer
			Eventually(ch).WithTimeout(6 * time.Second).Should(Receive(&got))
			Expect(got.TookMS).To(BeNumerically("<", 4500), "call %d ended past its deadline", i)
			switch {
			case got.Error == "":
				kinds["ok"]++
			case got.Kind == "node_lost":
				Expect(i%2).To(Equal(1), "an idempotent call lost with its node is retried: %s", got.Error)
				kinds["node_lost"]++
			case got.Kind == "deadline_exceeded": // queued behind the retried calls on c
				kinds["deadline_exceeded"]++
			default:
				Fail(fmt.Sprintf("call %d: untyped failure %q (%s)", i, got.Error, got.Kind))
			}
		}
		fmt.Fprintf(GinkgoWriter, "outcomes of the 12 calls: %v\n", kinds)
		Expect(kinds["node_lost"]).To(BeNumerically(">", 0), "some calls ran on b")
		for range 4 {
			got := add(a, "shared")
			Expect(got.Error).To(BeEmpty())
			Expect(nodeOf(got)).To(Equal("c"))
		}
		Eventually(a.Members).Should(ConsistOf("a", "c"))
		Expect(add(a, "beta").Kind).To(Equal("unknown_pool"), "no node hosts beta now")
	})

	It("takes a node back when it rejoins, without a restart of the others", func() {
		(*t).b = (*t).b.Restart()
		(*t).pids = append((*t).pids, (*t).b.PIDs()...)
		for _, n := range []*node{(*t).a, (*t).c} {
			Eventually(n.Members).Should(ConsistOf("a", "b", "c"))
			Eventually(func() string { return nodeOf(add(n, "beta")) }).Should(Equal("b"))
		}
		Expect(nodeOf(add((*t).b, "alpha"))).To(Equal("a"))
	})

	It("stops a node gracefully: the calls it runs finish, new ones go to the other nodes, and it leaves the cluster", func() {
		a, c := (*t).a, (*t).c
		var calls []<-chan answer
		for range 4 {
			calls = append(calls, a.Send(command{Op: "call", Pool: "shared", Tool: "sleep", Args: map[string]float64{"seconds": 1}, TimeoutMS: 10_000}))
		}
		time.Sleep(200 * time.Millisecond)
		(*t).pids = append((*t).pids, c.PIDs()...)
		stopped := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(stopped)
			c.Stop()
		}()
		time.Sleep(300 * time.Millisecond)
		for range 3 {
			got := add(a, "shared")
			Expect(got.Error).To(BeEmpty(), "a's members %v; a's cluster log lines %v", a.Members(), clusterLines(a))
			Expect(nodeOf(got)).To(Equal("b"), "c is draining")
		}
		for _, ch := range calls {
			Eventually(ch).Should(Receive(HaveField("Error", BeEmpty())))
		}
		Eventually(stopped).Should(BeClosed())
		Eventually(a.Members).Should(ConsistOf("a", "b"))
	})
}
