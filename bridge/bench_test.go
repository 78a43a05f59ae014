package bridge_test

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/reference"
	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// echoArgs is a 100-byte JSON argument object for the echo tool.
var echoArgs = reference.EchoArgs

func startBenchWorker(b *testing.B, id string) *bridge.Process {
	b.Helper()
	python := bridge.Interpreter()
	if err := exec.Command(python, "-c", "import pyvisor_worker").Run(); err != nil {
		b.Skipf("needs %s with pyvisor-worker installed (go tool task setup): %v", python, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := bridge.Start(ctx, bridge.WithPython(python), bridge.WithTools("pyvisor_worker.examples"), bridge.WithWorkerID(id))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

// BenchmarkExecute compares a 100-byte echo through bridge.Client with a bare generated
// gRPC client on the same connection to the same worker. Each op is one sequential call,
// so calls/s is the per-worker sequential rate.
func BenchmarkExecute(b *testing.B) {
	if len(echoArgs) != 100 {
		b.Fatalf("echo arguments are %d bytes, want 100", len(echoArgs))
	}
	p := startBenchWorker(b, "bench-0")
	ctx := context.Background()
	bare := workerv1.NewWorkerServiceClient(p.Client().Conn())
	// Warm the connection and the worker's code paths.
	for range 200 {
		if _, err := p.Client().Execute(ctx, bridge.Request{Tool: "echo", Args: echoArgs}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("via=bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := reference.Echo(ctx, bare); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	})
	b.Run("via=bridge", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Client().Execute(ctx, bridge.Request{Tool: "echo", Args: echoArgs}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	})
}

// BenchmarkStart measures spawn-to-handshake (and stop) of 1 and of 8 workers started
// concurrently.
func BenchmarkStart(b *testing.B) {
	python := bridge.Interpreter()
	if err := exec.Command(python, "-c", "import pyvisor_worker").Run(); err != nil {
		b.Skipf("needs %s with pyvisor-worker installed (go tool task setup): %v", python, err)
	}
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			var ready time.Duration
			for b.Loop() {
				procs := make([]*bridge.Process, n)
				errs := make([]error, n)
				start := time.Now()
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						procs[i], errs[i] = bridge.Start(context.Background(), bridge.WithPython(python),
							bridge.WithTools("pyvisor_worker.examples"), bridge.WithWorkerID(fmt.Sprintf("bench-%d", i)))
					})
				}
				wg.Wait()
				ready += time.Since(start)
				b.StopTimer()
				for i, p := range procs {
					if errs[i] != nil {
						b.Fatal(errs[i])
					}
					_ = p.Stop(context.Background())
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(ready.Milliseconds())/float64(b.N), "ms-to-ready")
		})
	}
}
