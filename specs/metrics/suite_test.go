// Package metrics_test holds the specs of pyvisor's Prometheus metrics: they start real
// runtimes with real Python workers, scrape the real endpoint over HTTP and parse what
// it serves (prometheus/common's expfmt).
package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

func TestMetrics(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Metrics: the Prometheus endpoint of a runtime")
}

var (
	python     string
	runtimeDir string // $TMPDIR of the suite: the workers' socket directories go here
)

var _ = BeforeSuite(func() { python, runtimeDir = harness.Suite("pvmet-") })

var _ = BeforeEach(func() { harness.CheckLeaks(runtimeDir) })

const poolName = "default"

// metricsOn is the endpoint on a free loopback port.
var metricsOn = pyvisor.MetricsConfig{Enabled: true, Address: "127.0.0.1:0"}

// pool is a one-pool configuration of the example tools, metrics on.
func pool(workers int, tweak ...func(*pyvisor.PoolConfig)) pyvisor.Config {
	pc := pyvisor.PoolConfig{Name: poolName, Tools: []string{"pyvisor_worker.examples"}, Workers: workers}
	for _, t := range tweak {
		t(&pc)
	}
	return pyvisor.Config{Python: python, Pools: []pyvisor.PoolConfig{pc}, Metrics: metricsOn}
}

// heartbeats turns on fast heartbeats: a stopped worker is given up on in about a second.
func heartbeats(p *pyvisor.PoolConfig) {
	p.Heartbeat = pyvisor.HeartbeatConfig{Enabled: true, Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond, MaxMissed: 3}
}

// start starts a runtime for one spec and stops it after.
func start(cfg pyvisor.Config, opts ...pyvisor.Option) *pyvisor.Runtime {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts = append([]pyvisor.Option{pyvisor.WithLogger(zerolog.New(GinkgoWriter).Level(zerolog.WarnLevel))}, opts...)
	rt, err := pyvisor.Start(ctx, cfg, opts...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		Expect(rt.Stop(ctx)).To(Succeed())
	})
	return rt
}

func execute(rt *pyvisor.Runtime, tool string, args any, opts ...pyvisor.CallOption) (pyvisor.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return rt.Execute(ctx, poolName, tool, args, opts...)
}

// workerPID is the Python pid of the pool's first ready worker (0 when none is).
func workerPID(rt *pyvisor.Runtime) int {
	st, err := rt.Stats(context.Background())
	if err != nil || len(st) != 1 {
		return 0
	}
	for _, w := range st[0].Workers {
		if w.State == "ready" && w.PID > 0 {
			return w.PID
		}
	}
	return 0
}

// inFlight counts the calls running on the pool's workers.
func inFlight(rt *pyvisor.Runtime) int {
	st, err := rt.Stats(context.Background())
	if err != nil || len(st) != 1 {
		return -1
	}
	n := 0
	for _, w := range st[0].Workers {
		n += w.InFlight
	}
	return n
}

// Content types a scraper asks for.
const (
	acceptText        = "text/plain;version=0.0.4"
	acceptOpenMetrics = "application/openmetrics-text;version=1.0.0"
)

// get scrapes http://addr/metrics with accept, on a connection of its own (no idle
// connection, hence no goroutine, outlives it); it returns the body and content type.
func get(addr, accept string) (string, string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("GET /metrics: %s: %s", resp.Status, body)
	}
	return string(body), resp.Header.Get("Content-Type"), nil
}

// Families is one parsed scrape, by family name (counters keep their _total).
type Families map[string]*dto.MetricFamily

// scrapeText scrapes rt's endpoint in the text format.
func scrapeText(rt *pyvisor.Runtime) (string, error) {
	addr := rt.MetricsAddress()
	if addr == "" {
		return "", fmt.Errorf("metrics are off")
	}
	body, _, err := get(addr, acceptText)
	return body, err
}

// scrape scrapes rt's endpoint and parses it.
func scrape(rt *pyvisor.Runtime) (Families, error) {
	body, err := scrapeText(rt)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse scrape: %w\n%s", err, body)
	}
	return fams, nil
}

// mustScrape scrapes and fails the spec on error.
func mustScrape(rt *pyvisor.Runtime) Families {
	GinkgoHelper()
	fams, err := scrape(rt)
	Expect(err).NotTo(HaveOccurred())
	return fams
}

// L is a set of labels a series must have (others may exist).
type L map[string]string

func matches(m *dto.Metric, want L) bool {
	have := map[string]string{}
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// Value sums the series of family name that have the labels want: counter and gauge
// values, the sample count of histograms. A missing family or series is 0.
func (f Families) Value(name string, want L) float64 {
	fam, ok := f[name]
	if !ok {
		return 0
	}
	sum := 0.0
	for _, m := range fam.GetMetric() {
		if !matches(m, want) {
			continue
		}
		switch fam.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			sum += float64(m.GetHistogram().GetSampleCount())
		case dto.MetricType_UNTYPED:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// Series counts the series of family name that have the labels want.
func (f Families) Series(name string, want L) int {
	n := 0
	if fam, ok := f[name]; ok {
		for _, m := range fam.GetMetric() {
			if matches(m, want) {
				n++
			}
		}
	}
	return n
}

// value is a poller for Eventually: the value of a family's series in a new scrape.
func value(rt *pyvisor.Runtime, name string, want L) func() (float64, error) {
	return func() (float64, error) {
		fams, err := scrape(rt)
		if err != nil {
			return 0, err
		}
		return fams.Value(name, want), nil
	}
}

// errorsAs is errors.As, for the specs' matchers.
func errorsAs(err error, target any) bool { return errors.As(err, target) }
