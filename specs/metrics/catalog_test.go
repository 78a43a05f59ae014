package metrics_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"

	"github.com/pyvisor/pyvisor"
)

// monitoring is docs/monitoring, from this suite's directory.
var monitoring = filepath.Join("..", "..", "docs", "monitoring")

var metricName = regexp.MustCompile(`\bpyvisor_[a-z_]+`)

// clusterFamily matches the metrics only a cluster node has.
var clusterFamily = regexp.MustCompile(`^pyvisor_(cluster|remote)_`)

// dashboardExprs are the PromQL expressions of the Grafana dashboard's panels.
func dashboardExprs() []string {
	GinkgoHelper()
	b, err := os.ReadFile(filepath.Join(monitoring, "grafana-dashboard.json"))
	Expect(err).NotTo(HaveOccurred())
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	Expect(json.Unmarshal(b, &dash)).To(Succeed())
	var out []string
	for _, p := range dash.Panels {
		for _, t := range p.Targets {
			out = append(out, t.Expr)
		}
	}
	Expect(out).NotTo(BeEmpty())
	return out
}

// namesIn lists the pyvisor_* names used in texts, sorted, without duplicates.
func namesIn(texts ...string) []string {
	set := map[string]bool{}
	for _, t := range texts {
		for _, n := range metricName.FindAllString(t, -1) {
			set[n] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// family maps a series name to its family in fams: a histogram's _bucket, _sum and
// _count to the histogram; "" when there is none.
func family(fams Families, name string) string {
	if _, ok := fams[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if f, ok := fams[base]; found && ok && f.GetType() == dto.MetricType_HISTOGRAM {
			return base
		}
	}
	return ""
}

var _ = Describe("The dashboard, the alert rules and docs/metrics.md", Label("python"), func() {
	It("name only metrics that a real scrape has, and the docs name every family it has", func() {
		rt := start(pool(1, heartbeats, func(p *pyvisor.PoolConfig) { p.QueueSize = 1 }),
			pyvisor.WithCallback("ping", func(context.Context, json.RawMessage) (any, error) { return "pong", nil }))
		worker := L{"pool": poolName, "worker": "default-0"}

		By("a tool calling back into Go")
		_, err := execute(rt, "call_go", map[string]string{"name": "ping"})
		Expect(err).NotTo(HaveOccurred())

		By("a payload through shared memory")
		_, err = execute(rt, "echo_payload", nil, pyvisor.WithPayload(make([]byte, 1<<20)))
		Expect(err).NotTo(HaveOccurred())

		By("calls of each outcome")
		_, err = execute(rt, "add", map[string]int{"a": 1, "b": 2})
		Expect(err).NotTo(HaveOccurred())
		_, err = execute(rt, "raise", nil)
		Expect(err).To(HaveOccurred())
		_, err = execute(rt, "no_such_tool", nil)
		Expect(err).To(MatchError(pyvisor.ErrUnknownTool))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err = rt.Execute(ctx, poolName, "sleep", map[string]float64{"seconds": 5})
		cancel()
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Eventually(func() int { return inFlight(rt) }).Should(BeZero())

		By("a queued call and a rejected one")
		busy, queued := make(chan error, 1), make(chan error, 1)
		go func() { _, err := execute(rt, "sleep", map[string]float64{"seconds": 0.3}); busy <- err }()
		Eventually(func() int { return inFlight(rt) }).Should(Equal(1))
		go func() { _, err := execute(rt, "add", map[string]int{"a": 1, "b": 1}); queued <- err }()
		Eventually(value(rt, "pyvisor_queue_depth", L{"pool": poolName})).Should(Equal(1.0))
		_, err = execute(rt, "add", map[string]int{"a": 1, "b": 1})
		Expect(err).To(MatchError(pyvisor.ErrPoolSaturated))
		Eventually(busy).Should(Receive(BeNil()))
		Eventually(queued).Should(Receive(BeNil()))

		By("heartbeats, a stopped worker and a killed one")
		Eventually(value(rt, "pyvisor_heartbeat_pongs_total", worker)).Should(BeNumerically(">=", 1))
		Expect(syscall.Kill(workerPID(rt), syscall.SIGSTOP)).To(Succeed())
		Eventually(value(rt, "pyvisor_worker_restarts_total", L{"pool": poolName, "reason": "heartbeat"})).Should(Equal(1.0))
		Eventually(workerPID, 20*time.Second).WithArguments(rt).ShouldNot(BeZero())
		Expect(syscall.Kill(workerPID(rt), syscall.SIGKILL)).To(Succeed())
		Eventually(value(rt, "pyvisor_worker_restarts_total", L{"pool": poolName, "reason": "crash"})).Should(Equal(1.0))
		Eventually(value(rt, "pyvisor_worker_memory_resident_bytes", worker)).Should(BeNumerically(">", 0))
		st, err := rt.Stats(context.Background())
		Expect(err).NotTo(HaveOccurred())
		version := L{"pool": poolName, "worker": st[0].Workers[0].ID, "version": st[0].Workers[0].Version}
		Eventually(value(rt, "pyvisor_worker_code_info", version)).Should(Equal(1.0))

		fams := mustScrape(rt)
		var scraped []string
		for name := range fams {
			if strings.HasPrefix(name, "pyvisor_") {
				scraped = append(scraped, name)
			}
		}
		sort.Strings(scraped)
		GinkgoWriter.Printf("scraped families: %v\n", scraped)
		Expect(scraped).To(HaveLen(25), "the catalog of docs/metrics.md")

		alerts, err := os.ReadFile(filepath.Join(monitoring, "alerts.yml"))
		Expect(err).NotTo(HaveOccurred())
		docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
		Expect(err).NotTo(HaveOccurred())
		for source, names := range map[string][]string{
			"grafana-dashboard.json": namesIn(dashboardExprs()...),
			"alerts.yml":             namesIn(string(alerts)),
			"docs/metrics.md":        namesIn(string(docs)),
		} {
			Expect(names).NotTo(BeEmpty(), source)
			for _, n := range names {
				if clusterFamily.MatchString(n) {
					continue // a node's only: specs/cluster checks them against a node's scrape
				}
				Expect(family(fams, n)).NotTo(BeEmpty(), "%s names %s, which the scrape does not have", source, n)
			}
		}

		used := map[string]bool{}
		for _, n := range namesIn(append(dashboardExprs(), string(alerts))...) {
			used[family(fams, n)] = true
		}
		documented := namesIn(string(docs))
		for _, f := range scraped {
			Expect(documented).To(ContainElement(f), "docs/metrics.md documents %s", f)
			Expect(used).To(HaveKey(f), "the dashboard or the alerts use %s", f)
		}
		Expect(slices.Contains(scraped, "pyvisor_call_duration_seconds")).To(BeTrue())
	})
})
