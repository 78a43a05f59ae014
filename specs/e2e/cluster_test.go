package e2e_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	ch "github.com/pyvisor/pyvisor/specs/internal/clusterharness"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

var _ = Describe("Tracing across cluster nodes into a real Jaeger v2", Label("e2e", "cluster", "python"), func() {
	It("stores a call from one node to a pool on another as one trace: the caller's spans, the remote hop and the hosting node's Go and Python spans, parent by parent", func() {
		j := startJaeger()
		dir, remove := harness.TempDir("pve2e-nodes-")
		DeferCleanup(remove)
		launcher := ch.Launcher{Bin: ch.Build(dir), Dir: dir, Python: python}
		ports := ch.FreePorts(2)
		peers := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
		start := func(name string, port int, pools ...map[string]any) *ch.Node {
			n := launcher.Start(name, map[string]any{
				"pools": pools,
				"cluster": map[string]any{"provider": "automanaged", "node": name,
					"automanaged": map[string]any{"port": port, "peers": peers, "refresh": "500ms"}},
			}, "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+j.OTLPHTTP,
				"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_SERVICE_NAME=pyvisor-"+name)
			DeferCleanup(func() {
				select {
				case <-n.Exited:
				default:
					n.Kill()
				}
			})
			return n
		}
		a := start("a", ports[0]) // calls only: it runs no pool
		b := start("b", ports[1], ch.Pool("beta"))
		Eventually(a.Members).Should(ConsistOf("a", "b"))

		got := a.Call(ch.Command{Pool: "beta", Tool: "add", Args: map[string]int{"a": 1, "b": 2}})
		Expect(got.Error).To(BeEmpty())
		Expect(got.Result).To(MatchJSON("3"))
		a.Stop() // flushes each node's batched spans to Jaeger
		b.Stop()

		Eventually(func(g Gomega) {
			spans, err := j.findSpans("pyvisor-a", "client add")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(spans).To(HaveEach(HaveField("TraceID", got.Trace)), "one call, one trace")
			var seen []string
			for _, s := range spans {
				seen = append(seen, s.Service+": "+s.Name)
			}
			g.Expect(chainFrom(spans, pyService, "tool add")).To(Equal([]string{
				"pyvisor-a: client add",
				"pyvisor-a: execute add",
				"pyvisor-a: remote add", // CLIENT: the hop out of node a
				"pyvisor-b: remote add", // SERVER: node b's gateway, its parent from the envelope headers
				"pyvisor-b: receive Execute",
				"pyvisor-b: pyvisor.worker.v1.WorkerService/Execute",
				pyService + ": /pyvisor.worker.v1.WorkerService/Execute", // b's worker: its parent is b's
				pyService + ": tool add",
			}), "spans in the trace: %v", seen)
		}).WithTimeout(15 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})
})
