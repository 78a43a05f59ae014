// Command bench measures pyvisor in one run and prints the figures side by side, so
// ratios compare measurements taken under the same machine load, and states each goal
// next to its figure:
//
//   - latency of a 100-byte echo, sequential, through five paths interleaved in blocks:
//     a Python grpc.aio echo server with no pyvisor code (internal/reference), on one
//     long-lived bidirectional stream (the ceiling every path is compared with: one
//     message each way per call, as on a worker's channel) and unary; a bare generated
//     client's unary Execute to the pool's worker; the pool (Runtime.Execute, over the
//     worker's channel); and bridge.Client on a worker of its own. Goals: pool p50 /
//     bidi echo p50 <= 1.25, pool sequential calls/s / unary echo calls/s >= 2.5;
//   - what tracing (sampled, and not sampled) adds to a pool call's p50 on the Go side,
//     in µs and as a percentage of the untraced pool's p50 (goals <= 10 % and <= 2 %);
//   - callbacks: the round trip of a no-op Go callback made from inside a running tool,
//     as a ratio to a plain Runtime.Execute of the no-op echo tool;
//   - throughput of -callers concurrent callers through pools of 1 and of 2 workers
//     (one call in flight per worker), with a bare gRPC client to one worker for
//     reference (goal: pool 2 / pool 1 >= 1.6);
//   - concurrency on one worker: 64 callers of the async tool sleep (10 ms) through a
//     1-worker pool with MaxConcurrent 32 and with MaxConcurrent 1 (goal: ratio >= 25);
//   - cluster: nodes of one automanaged cluster in this process; a call to a pool on
//     another node as a ratio to the same call on the calling node's own pool, and one
//     client node's callers against a pool two other nodes host, with one local pool
//     of as many workers for context;
//   - startup of pools of 1, 4 and 8 workers (pyvisor.Start until all serve);
//   - recovery: SIGKILL a worker's Python process, time until the pool serves again;
//   - data (issue 19): round trips of 64 KiB to 1 GiB through the default API, the
//     in-place API and the in-frame path, against a bare Unix-socket echo and memmove,
//     interleaved; a numpy reduction against numpy's own time; RSS growth of both
//     processes over a 1 GiB round trip (see data.go);
//   - clusterdata: bandwidth between two nodes of a cluster in this process, 16 and
//     256 MiB one way (payload_size a -> b, fill b -> a), against a bare gRPC stream
//     between two endpoints of this process (reference.Stream), interleaved (goal:
//     pyvisor / gRPC >= 0.5 at 256 MiB; see clusterdata.go).
//
// Flags: -python, -calls and -warmup (latency and tracing, per path), -callers,
// -throughput-time and -throughput-rounds (throughput and concurrency), -startups,
// -recoveries, -data-rounds, -data-budget, -data-sums and -clusterdata-rounds; -steps
// runs some steps only (e.g. -steps data); see -h for their defaults.
//
// Figures are medians and percentiles of per-call (per-run) durations. Nothing is
// asserted: the exit status is non-zero only when something fails. Every Python
// process is stopped before it exits, Ctrl-C included. Run it with
// `go tool task bench` (after the go test benchmarks) or `go run ./cmd/bench -h`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pyvisor/pyvisor/bridge"
)

type settings struct {
	python     string
	calls      int
	warmup     int
	callers    int
	tpDuration time.Duration
	tpRounds   int
	startups   int
	recoveries int
	steps      string
}

// step is one section of the report.
type step struct {
	name string
	run  func(context.Context, settings) error
}

var steps = []step{
	{"latency", latency}, {"tracing", tracingCost}, {"callbacks", callbacks}, {"throughput", throughput},
	{"concurrency", concurrency}, {"cluster", clusterCalls}, {"startup", startup}, {"recovery", recovery},
	{"data", data}, {"clusterdata", clusterData},
}

func stepNames() []string {
	names := make([]string, len(steps))
	for i, st := range steps {
		names[i] = st.name
	}
	return names
}

// selected returns the steps -steps names (all of them when it is empty).
func selected(list string) ([]step, error) {
	if list == "" {
		return steps, nil
	}
	want := map[string]bool{}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(stepNames(), name) {
			return nil, fmt.Errorf("unknown step %q (steps: %s)", name, strings.Join(stepNames(), ","))
		}
		want[name] = true
	}
	var out []step
	for _, st := range steps {
		if want[st.name] {
			out = append(out, st)
		}
	}
	return out, nil
}

func main() {
	var s settings
	flag.StringVar(&s.python, "python", "", "worker interpreter (default: $PYVISOR_PYTHON, else the nearest .venv, else python3)")
	flag.IntVar(&s.calls, "calls", 3000, "sequential echo calls per path for the latency table")
	flag.IntVar(&s.warmup, "warmup", 300, "untimed calls per path before measuring")
	flag.IntVar(&s.callers, "callers", 8, "concurrent callers in the throughput table")
	flag.DurationVar(&s.tpDuration, "throughput-time", time.Second, "duration of one throughput round")
	flag.IntVar(&s.tpRounds, "throughput-rounds", 3, "throughput rounds per configuration (interleaved; the median is shown)")
	flag.IntVar(&s.startups, "startups", 3, "starts per pool size")
	flag.IntVar(&s.recoveries, "recoveries", 10, "kill-and-recover cycles")
	flag.StringVar(&s.steps, "steps", "", "comma-separated steps to run, in the report's order (default all: "+strings.Join(stepNames(), ",")+")")
	flag.Parse()
	if flag.NArg() > 0 || s.calls < 1 || s.warmup < 0 || s.callers < 1 || s.tpDuration <= 0 ||
		s.tpRounds < 1 || s.startups < 1 || s.recoveries < 1 {
		fmt.Fprintln(os.Stderr, "bench: bad flags (counts must be positive); see -h")
		os.Exit(2)
	}
	if _, err := selected(s.steps); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if s.python == "" {
		s.python = bridge.Interpreter()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, s)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, s settings) error {
	if err := exec.CommandContext(ctx, s.python, "-c", "import pyvisor_worker").Run(); err != nil {
		return fmt.Errorf("%s cannot import pyvisor_worker (run go tool task setup, or set PYVISOR_PYTHON): %w", s.python, err)
	}
	todo, err := selected(s.steps)
	if err != nil {
		return err
	}
	began := time.Now()
	printHeader(s)
	for _, st := range todo {
		if err := st.run(ctx, s); err != nil {
			return err
		}
	}
	fmt.Printf("\ntotal %.1fs\n", time.Since(began).Seconds())
	return nil
}

func printHeader(s settings) {
	load, _ := os.ReadFile("/proc/loadavg")
	fields := strings.Fields(string(load))
	if len(fields) > 3 {
		fields = fields[:3]
	}
	fmt.Printf("pyvisor bench  %s  %s/%s  %d CPUs (GOMAXPROCS %d)  load %s\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), strings.Join(fields, " "))
	fmt.Printf("python %s  echo args %d bytes\n", s.python, len(echoArgs))
}
