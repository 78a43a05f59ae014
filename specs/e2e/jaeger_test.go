package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"text/template"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// jaegerConfig is a Jaeger v2 (OpenTelemetry Collector) configuration: in-memory
// storage, OTLP receivers, the query service, a health check; every endpoint on
// 127.0.0.1, no self-tracing (with it on, stopping takes about 10 s), no metrics server.
var jaegerConfig = template.Must(template.New("jaeger").Parse(`
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: {{.Health}}
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: {{.QueryHTTP}}
    grpc:
      endpoint: {{.QueryGRPC}}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {{.OTLPGRPC}}
      http:
        endpoint: {{.OTLPHTTP}}

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`))

// jaeger is one running Jaeger v2 process.
type jaeger struct {
	OTLPGRPC, OTLPHTTP, QueryHTTP, QueryGRPC, Health string

	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited and been reaped
	http *http.Client
}

// startJaeger starts Jaeger for the current spec, waits until it is healthy and its
// query API answers, and stops it when the spec ends.
func startJaeger() *jaeger {
	GinkgoHelper()
	ports := freePorts(5)
	j := &jaeger{
		OTLPGRPC: addr(ports[0]), OTLPHTTP: addr(ports[1]),
		QueryHTTP: addr(ports[2]), QueryGRPC: addr(ports[3]), Health: addr(ports[4]),
		done: make(chan struct{}),
		// No keep-alive: no idle connection (and its goroutines) outlives a request.
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	dir, err := os.MkdirTemp(jaegerRoot, "run-")
	Expect(err).NotTo(HaveOccurred())
	var cfg bytes.Buffer
	Expect(jaegerConfig.Execute(&cfg, j)).To(Succeed())
	config := filepath.Join(dir, "config.yaml")
	Expect(os.WriteFile(config, cfg.Bytes(), 0o600)).To(Succeed())
	j.log = filepath.Join(dir, "jaeger.log")
	logFile, err := os.Create(j.log)
	Expect(err).NotTo(HaveOccurred())
	defer logFile.Close() // the child has its own copy

	j.cmd = exec.Command(jaegerBin, "--config", "file:"+config)
	j.cmd.Stdout, j.cmd.Stderr = logFile, logFile
	// Its own process group, and killed if this process dies. Pdeathsig fires when the
	// spawning thread exits, so the goroutine that starts it stays on that thread until
	// the process has exited.
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(j.done)
		if err := j.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = j.cmd.Wait()
	}()
	Expect(<-started).To(Succeed(), "starting %s", jaegerBin)
	DeferCleanup(j.stop)
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() {
			text := j.logText()
			if len(text) > 16<<10 {
				text = "...\n" + text[len(text)-16<<10:]
			}
			AddReportEntry("jaeger log", text)
		}
	})

	Eventually(func(g Gomega) {
		g.Expect(j.exited()).To(BeFalse(), "jaeger exited early:\n%s", j.logText())
		for _, u := range []string{"http://" + j.Health + "/status", "http://" + j.QueryHTTP + "/api/v3/services"} {
			resp, err := j.http.Get(u)
			g.Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(http.StatusOK), u)
		}
	}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(Succeed(), "jaeger did not become ready")
	return j
}

func (j *jaeger) exited() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

func (j *jaeger) logText() string {
	b, _ := os.ReadFile(j.log)
	return string(b)
}

// stop sends SIGTERM, then SIGKILL to the process group if Jaeger is still running
// after 10 s, and waits until it is reaped.
func (j *jaeger) stop() {
	if j.exited() {
		return
	}
	_ = j.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-j.done:
		return
	case <-time.After(10 * time.Second):
		AddReportEntry("jaeger ignored SIGTERM for 10 s; killed")
		_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL)
	}
	Eventually(j.done).WithTimeout(10 * time.Second).Should(BeClosed())
}

// otlpSpan is a span as Jaeger's API v3 returns it (OTLP JSON, hex ids).
type otlpSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Kind         int    `json:"kind"`
	Events       []struct {
		Name string `json:"name"`
	} `json:"events"`

	Service string `json:"-"` // the resource's service.name
}

type otlpAttr struct {
	Key   string `json:"key"`
	Value struct {
		StringValue string `json:"stringValue"`
	} `json:"value"`
}

type v3Response struct {
	Result struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []otlpAttr `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []otlpSpan `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	} `json:"result"`
}

// findSpans searches Jaeger's API v3 for the traces of service with a span named
// operation, started in the last ten minutes, and returns all their spans (from every
// service). No trace yet is an empty result, not an error.
func (j *jaeger) findSpans(service, operation string) ([]otlpSpan, error) {
	now := time.Now()
	q := url.Values{
		"query.service_name":   {service},
		"query.operation_name": {operation},
		"query.start_time_min": {now.Add(-10 * time.Minute).UTC().Format(time.RFC3339Nano)},
		"query.start_time_max": {now.Add(time.Minute).UTC().Format(time.RFC3339Nano)},
		"query.num_traces":     {"20"}, // required: the memory store refuses a search depth of 0
	}
	resp, err := j.http.Get("http://" + j.QueryHTTP + "/api/v3/traces?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, nil
	case http.StatusOK:
	default:
		return nil, fmt.Errorf("jaeger query: %s: %s", resp.Status, body)
	}
	var r v3Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("jaeger query: %w: %s", err, body)
	}
	var spans []otlpSpan
	for _, rs := range r.Result.ResourceSpans {
		service := ""
		for _, a := range rs.Resource.Attributes {
			if a.Key == "service.name" {
				service = a.Value.StringValue
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				s.Service = service
				spans = append(spans, s)
			}
		}
	}
	return spans, nil
}
