package pyvisor_test

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/reference"
	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// The benchmarks of the runtime against a bare gRPC client on the same Python worker.
// See docs/benchmarks.md; cmd/bench prints the same measurements side by side in one run.
// They report figures and never assert them.

const (
	benchPool  = "bench"
	benchTools = "pyvisor_worker.examples"
	// benchCallers is the number of concurrent callers of BenchmarkThroughput, fixed so
	// the figures do not depend on GOMAXPROCS.
	benchCallers = 8
)

// benchArgs is the 100-byte JSON argument object of the echo tool.
var benchArgs = reference.EchoArgs

// benchPython returns the worker's interpreter, or skips b when it cannot import
// pyvisor_worker (no venv: go tool task setup).
func benchPython(b *testing.B) string {
	b.Helper()
	if len(benchArgs) != 100 {
		b.Fatalf("echo arguments are %d bytes, want 100", len(benchArgs))
	}
	python := bridge.Interpreter()
	if err := exec.Command(python, "-c", "import pyvisor_worker").Run(); err != nil {
		b.Skipf("needs %s with pyvisor-worker installed (go tool task setup, or set PYVISOR_PYTHON): %v", python, err)
	}
	return python
}

func benchConfig(python string, workers int) pyvisor.Config {
	return pyvisor.Config{Python: python, Pools: []pyvisor.PoolConfig{{
		Name:    benchPool,
		Tools:   []string{benchTools},
		Workers: workers,
		// BenchmarkRecovery kills a worker several times a second.
		Restart: pyvisor.RestartConfig{MaxRestarts: 1000, Within: time.Second},
		// The Python side's tracing stays off whatever the shell says: the figures
		// are the Go side's.
		Env: map[string]string{"OTEL_TRACES_EXPORTER": "none"},
	}}}
}

// startBenchRuntime starts a runtime with one pool of n workers, stopped at cleanup.
func startBenchRuntime(b *testing.B, python string, n int, opts ...pyvisor.Option) *pyvisor.Runtime {
	b.Helper()
	return startRuntimeWith(b, benchConfig(python, n), opts...)
}

// startRuntimeWith starts a runtime with cfg, stopped at cleanup.
func startRuntimeWith(b *testing.B, cfg pyvisor.Config, opts ...pyvisor.Option) *pyvisor.Runtime {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := pyvisor.Start(ctx, cfg, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := rt.Stop(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return rt
}

// benchWorkers returns the pool's worker slots.
func benchWorkers(b *testing.B, rt *pyvisor.Runtime) []pyvisor.PoolStats {
	b.Helper()
	stats, err := rt.Stats(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return stats
}

// workerPID returns the pid of the Python process of slot i, 0 unless it is ready.
func workerPID(b *testing.B, rt *pyvisor.Runtime, i int) int {
	b.Helper()
	w := benchWorkers(b, rt)[0].Workers[i]
	if w.State != "ready" {
		return 0
	}
	return w.PID
}

// bareClient dials a generated gRPC client straight to the Python process of slot i
// of rt's pool: the same process the pool calls, over a connection of its own.
func bareClient(b *testing.B, rt *pyvisor.Runtime, i int) workerv1.WorkerServiceClient {
	b.Helper()
	w := benchWorkers(b, rt)[0].Workers[i]
	if w.State != "ready" {
		b.Fatalf("worker %d is not ready", i)
	}
	sock := w.Address
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return workerv1.NewWorkerServiceClient(conn)
}

func poolEcho(ctx context.Context, rt *pyvisor.Runtime) error {
	_, err := rt.Execute(ctx, benchPool, "echo", benchArgs)
	return err
}

func warm(b *testing.B, call func(context.Context) error) {
	b.Helper()
	for range 200 {
		if err := call(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkExecute compares a 100-byte echo through Runtime.Execute on a one-worker
// pool with bare clients of the same Python process: a generated unary client
// (via=bare) and a generated Channel stream sending one call frame per call (via=channel,
// the cheapest client of the path the pool takes). Each op is one sequential call, so
// calls/s is the per-worker sequential rate. go-cpu-ns/op is the CPU time the Go process
// spent per call (see goCPUTime): the pool's own cost, without the Python process's,
// which wall-clock figures on a small machine blur.
func BenchmarkExecute(b *testing.B) {
	python := benchPython(b)
	rt := startBenchRuntime(b, python, 1)
	bare := bareClient(b, rt, 0)
	ch, err := reference.OpenChannel(bare)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ch.Close)
	ctx := context.Background()
	bareCall := func(ctx context.Context) error { return reference.Echo(ctx, bare) }
	poolCall := func(ctx context.Context) error { return poolEcho(ctx, rt) }
	warm(b, bareCall)
	warm(b, ch.Echo)
	warm(b, poolCall)
	for _, via := range []struct {
		name string
		call func(context.Context) error
	}{{"bare", bareCall}, {"channel", ch.Echo}, {"pool", poolCall}} {
		b.Run("via="+via.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu, n := goCPUTime(), 0
			for b.Loop() {
				if err := via.call(ctx); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(goCPUTime()-cpu)/float64(n), "go-cpu-ns/op")
			reportRate(b)
		})
	}
}

// runCallers runs b.N calls spread over benchCallers concurrent goroutines.
func runCallers(b *testing.B, call func(context.Context) error) {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	for range benchCallers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := call(ctx); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	reportRate(b)
}

// BenchmarkThroughput measures the echo rate of benchCallers concurrent callers through
// a pool of 1 and of 2 workers, and of the same callers on a bare gRPC client to a
// single worker (via=bare-1), the reference. A pool worker runs one call at a time
// (MaxConcurrent 1); the bare client lets the worker overlap calls.
func BenchmarkThroughput(b *testing.B) {
	python := benchPython(b)
	rt1 := startBenchRuntime(b, python, 1)
	rt2 := startBenchRuntime(b, python, 2)
	bare := bareClient(b, rt1, 0)
	bareCall := func(ctx context.Context) error { return reference.Echo(ctx, bare) }
	pool1 := func(ctx context.Context) error { return poolEcho(ctx, rt1) }
	pool2 := func(ctx context.Context) error { return poolEcho(ctx, rt2) }
	warm(b, bareCall)
	warm(b, pool1)
	warm(b, pool2)
	for _, c := range []struct {
		name string
		call func(context.Context) error
	}{{"via=bare-1", bareCall}, {"workers=1", pool1}, {"workers=2", pool2}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			runCallers(b, c.call)
		})
	}
}

// BenchmarkStartup measures pyvisor.Start until every worker of a pool of 1, 4 and 8
// serves; Stop is not timed.
func BenchmarkStartup(b *testing.B) {
	python := benchPython(b)
	for _, n := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			cfg := benchConfig(python, n)
			for b.Loop() {
				rt, err := pyvisor.Start(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := rt.Stop(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/start")
		})
	}
}

// BenchmarkRecovery kills a one-worker pool's Python process with SIGKILL and measures
// until the pool serves from that slot again: a new process ready in Stats, and an
// echo through the pool succeeding.
func BenchmarkRecovery(b *testing.B) {
	python := benchPython(b)
	rt := startBenchRuntime(b, python, 1)
	warm(b, func(ctx context.Context) error { return poolEcho(ctx, rt) })
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		old := workerPID(b, rt, 0)
		if old == 0 {
			b.Fatal("worker 0 is not ready")
		}
		b.StartTimer()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if pid := workerPID(b, rt, 0); pid != 0 && pid != old {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("worker 0 not replaced within 30s")
			}
			time.Sleep(200 * time.Microsecond)
		}
		if err := poolEcho(ctx, rt); err != nil {
			b.Fatal("call after the replacement failed: ", err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/op")
}

// goCPUTime is the user plus system CPU time of this process so far (not its children:
// the Python workers), in nanoseconds.
func goCPUTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
