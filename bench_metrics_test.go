package pyvisor_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor"
)

// BenchmarkMetrics measures what recording metrics adds to a call: a sequential
// 100-byte echo through Runtime.Execute on a one-worker pool, with metrics off (the
// default: no-op instruments) and on (the runtime's Prometheus endpoint, recording
// every call's counter, duration histogram and the pool's queue series), both runtimes
// started in the same run. Compare the two ns/op (go test -bench=BenchmarkMetrics
// -count=5, then the medians); the difference is the per-call cost of metrics.
func BenchmarkMetrics(b *testing.B) {
	python := benchPython(b)
	off := startMetricsBenchRuntime(b, python, pyvisor.MetricsConfig{})
	on := startMetricsBenchRuntime(b, python, pyvisor.MetricsConfig{Enabled: true, Address: "127.0.0.1:0"})
	if on.MetricsAddress() == "" || off.MetricsAddress() != "" {
		b.Fatalf("metrics addresses: on %q, off %q", on.MetricsAddress(), off.MetricsAddress())
	}
	ctx := context.Background()
	for _, rt := range []*pyvisor.Runtime{off, on} {
		warm(b, func(ctx context.Context) error { return poolEcho(ctx, rt) })
	}
	for _, c := range []struct {
		name string
		rt   *pyvisor.Runtime
	}{{"off", off}, {"on", on}} {
		b.Run("metrics="+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := poolEcho(ctx, c.rt); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b)
		})
	}
	// The "on" runtime did record: its endpoint counts the echo calls.
	if body := scrapeMetricsBench(b, on.MetricsAddress()); !strings.Contains(body, `pyvisor_calls_total{outcome="ok",pool="bench",tool="echo"}`) {
		b.Fatalf("the endpoint has no echo calls:\n%s", body)
	}
}

func startMetricsBenchRuntime(b *testing.B, python string, m pyvisor.MetricsConfig) *pyvisor.Runtime {
	b.Helper()
	cfg := benchConfig(python, 1)
	cfg.Metrics = m
	return startRuntimeWith(b, cfg)
}

func scrapeMetricsBench(b *testing.B, addr string) string {
	b.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return string(body)
}
