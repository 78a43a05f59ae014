package metrics_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"

	"github.com/pyvisor/pyvisor"
)

// prometheusServer is a real Prometheus started by a spec.
type prometheusServer struct {
	addr string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
}

// freePort returns a loopback address nothing listens on now.
func freePort() string {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	addr := ln.Addr().String()
	Expect(ln.Close()).To(Succeed())
	return addr
}

// startPrometheus runs $PYVISOR_PROMETHEUS scraping target every second, on a free
// loopback port, with a temporary config and data directory; it is stopped (SIGTERM,
// then SIGKILL) after the spec. Without the variable the spec is skipped.
func startPrometheus(target string) *prometheusServer {
	GinkgoHelper()
	bin := os.Getenv("PYVISOR_PROMETHEUS")
	if bin == "" {
		Skip("PYVISOR_PROMETHEUS is not set: run `go tool task metrics:e2e` (it installs Debian's prometheus)")
	}
	dir := GinkgoT().TempDir()
	config := map[string]any{
		"global": map[string]any{"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
		"scrape_configs": []any{map[string]any{
			"job_name":       "pyvisor",
			"static_configs": []any{map[string]any{"targets": []string{target}}},
		}},
	}
	b, err := yaml.Marshal(config)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "prometheus.yml"), b, 0o600)).To(Succeed())

	p := &prometheusServer{addr: freePort(), out: &bytes.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.addr,
		"--web.console.templates="+filepath.Join(dir, "consoles"),
		"--web.console.libraries="+filepath.Join(dir, "console_libraries"),
		"--storage.tsdb.retention.time=1h",
		"--query.lookback-delta=1m",
		"--log.level=warn",
	)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	Expect(p.cmd.Start()).To(Succeed())
	go func() { p.done <- p.cmd.Wait() }()
	DeferCleanup(p.stop)
	return p
}

// stop sends SIGTERM and, if Prometheus is still running after 10s, SIGKILL.
func (p *prometheusServer) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	GinkgoWriter.Printf("prometheus output:\n%s\n", p.out.String())
}

func (p *prometheusServer) get(path string) ([]byte, int, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + p.addr + path)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}

// ready reports whether /-/ready answers 200.
func (p *prometheusServer) ready() error {
	select {
	case err := <-p.done:
		p.done <- err
		return StopTrying(fmt.Sprintf("prometheus exited: %v\n%s", err, p.out.String()))
	default:
	}
	_, code, err := p.get("/-/ready")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("/-/ready: %d", code)
	}
	return nil
}

// querySample is one element of an instant vector.
type querySample struct {
	Metric map[string]string
	Value  float64
}

// query runs an instant query; it fails when the API does not answer "success".
func (p *prometheusServer) query(expr string) ([]querySample, error) {
	body, code, err := p.get("/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status    string
		Error     string
		ErrorType string
		Data      struct {
			ResultType string
			Result     json.RawMessage
		}
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("query %s: %d %s: %w", expr, code, body, err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query %s: %s: %s", expr, resp.ErrorType, resp.Error)
	}
	if resp.Data.ResultType != "vector" {
		return nil, nil // scalars and strings: the expression is valid, nothing to read
	}
	var raw []struct {
		Metric map[string]string
		Value  [2]any
	}
	if err := json.Unmarshal(resp.Data.Result, &raw); err != nil {
		return nil, err
	}
	out := make([]querySample, 0, len(raw))
	for _, r := range raw {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", expr, r.Value, err)
		}
		out = append(out, querySample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// scalar is a poller for Eventually: the value of a query that returns one sample.
func (p *prometheusServer) scalar(expr string) func() (float64, error) {
	return func() (float64, error) {
		res, err := p.query(expr)
		if err != nil {
			return 0, err
		}
		if len(res) != 1 {
			return 0, fmt.Errorf("query %s: %d samples, want 1", expr, len(res))
		}
		return res[0].Value, nil
	}
}

var _ = Describe("A real Prometheus scraping a runtime", Label("e2e", "python"), func() {
	It("gets its heartbeat and call series through the query API, and evaluates every dashboard and alert expression", func() {
		rt := start(pool(1, heartbeats))
		prom := startPrometheus(rt.MetricsAddress())
		Eventually(prom.ready).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		for range 3 {
			_, err := execute(rt, "add", map[string]int{"a": 1, "b": 2})
			Expect(err).NotTo(HaveOccurred())
		}
		_, err := execute(rt, "raise", nil)
		Expect(err).To(HaveOccurred())
		_, err = execute(rt, "no_such_tool", nil)
		Expect(err).To(MatchError(pyvisor.ErrUnknownTool))

		// Prometheus's first scrape comes a few seconds after it starts.
		deadline := 60 * time.Second
		poll := 250 * time.Millisecond
		Eventually(prom.scalar(`up{job="pyvisor"}`)).WithTimeout(deadline).WithPolling(poll).Should(Equal(1.0))
		Eventually(prom.scalar(`sum(pyvisor_calls_total{pool="default",tool="add",outcome="ok"})`)).WithTimeout(deadline).WithPolling(poll).Should(Equal(3.0))
		Eventually(prom.scalar(`sum(pyvisor_calls_total{pool="default",tool="raise",outcome="tool_error"})`)).WithTimeout(deadline).WithPolling(poll).Should(Equal(1.0))
		Eventually(prom.scalar(`sum(pyvisor_calls_total{pool="default",tool="_unknown",outcome="unknown_tool"})`)).WithTimeout(deadline).WithPolling(poll).Should(Equal(1.0))
		Eventually(prom.scalar(`sum(pyvisor_call_duration_seconds_count{pool="default"})`)).WithTimeout(deadline).WithPolling(poll).Should(Equal(5.0))

		pongs := prom.scalar(`pyvisor_heartbeat_pongs_total{pool="default",worker="default-0"}`)
		Eventually(pongs).WithTimeout(deadline).WithPolling(poll).Should(BeNumerically(">", 0))
		first, err := pongs()
		Expect(err).NotTo(HaveOccurred())
		Eventually(pongs).WithTimeout(deadline).WithPolling(poll).Should(BeNumerically(">", first), "a later scrape has more pongs")
		Eventually(prom.scalar(`sum(rate(pyvisor_heartbeat_pings_total{pool="default"}[1m]))`)).WithTimeout(deadline).WithPolling(poll).Should(BeNumerically(">", 0))
		Eventually(prom.scalar(`histogram_quantile(0.99, sum by (le) (rate(pyvisor_heartbeat_latency_seconds_bucket{pool="default"}[1m])))`)).
			WithTimeout(deadline).WithPolling(poll).Should(And(BeNumerically(">", 0), BeNumerically("<", 1)))
		Expect(prom.scalar(`sum(pyvisor_heartbeat_failures_total{pool="default"}) or vector(0)`)()).To(BeZero())
		Expect(prom.scalar(`pyvisor_workers{pool="default",state="ready"}`)()).To(Equal(1.0))

		By("running every dashboard and alert expression through the query API")
		exprs := dashboardExprs()
		alerts, err := os.ReadFile(filepath.Join(monitoring, "alerts.yml"))
		Expect(err).NotTo(HaveOccurred())
		var rules struct {
			Groups []struct {
				Rules []struct {
					Alert, Expr string
				}
			}
		}
		Expect(yaml.Unmarshal(alerts, &rules)).To(Succeed())
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				exprs = append(exprs, r.Expr)
			}
		}
		grafana := strings.NewReplacer(`$pool`, `.*`, `$__rate_interval`, `1m`)
		for _, e := range exprs {
			_, err := prom.query(grafana.Replace(e))
			Expect(err).NotTo(HaveOccurred(), "expression %q", e)
		}
		res, err := prom.query(`sum by (outcome) (rate(pyvisor_calls_total{pool=~".*"}[1m]))`)
		Expect(err).NotTo(HaveOccurred())
		Expect(res).NotTo(BeEmpty())
	})
})
