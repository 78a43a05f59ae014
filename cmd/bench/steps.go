package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/reference"
	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// latencyBlock is how many calls in a row the latency table makes through one path.
const latencyBlock = 25

func table() *tabwriter.Writer {
	return tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// path is one way to make the echo call, measured in the latency table.
type path struct {
	name string
	call call
	d    []time.Duration
}

// latency measures sequential echo calls through five paths, one block of each in turn
// so that load changes hit every path alike: a Python gRPC echo server with no pyvisor
// code, on one long-lived bidirectional stream (the ceiling: one message each way per
// call, as on the channel) and unary; a bare generated client's unary Execute to the
// pool's worker; the pool itself; and bridge.Client on a worker of its own.
func latency(ctx context.Context, s settings) (err error) {
	rt, err := startRuntime(ctx, s.python, 1)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopRuntime(rt)) }()
	conn, err := dialWorker(ctx, rt)
	if err != nil {
		return err
	}
	defer conn.Close()

	startCtx, cancel := context.WithTimeout(ctx, readyWait)
	proc, err := bridge.Start(startCtx, bridge.WithPython(s.python), bridge.WithTools(toolsMod), bridge.WithWorkerID("bench-bridge"))
	cancel()
	if err != nil {
		return fmt.Errorf("start a bridge worker: %w", err)
	}
	defer func() { err = errors.Join(err, proc.Stop(context.Background())) }()

	echo, err := reference.StartEcho(ctx, s.python)
	if err != nil {
		return fmt.Errorf("start the python echo server: %w", err)
	}
	defer func() { err = errors.Join(err, echo.Close()) }()
	stream, err := echo.OpenStream(ctx)
	if err != nil {
		return fmt.Errorf("open an echo stream: %w", err)
	}
	defer stream.Close()

	// The pool echoes the value back.
	res, err := rt.Execute(ctx, poolName, "echo", echoArgs)
	if err != nil {
		return err
	}
	if want := echoArgs[len(`{"value":`) : len(echoArgs)-1]; string(res.JSON) != string(want) {
		return fmt.Errorf("echo returned %s, want %s", res.JSON, want)
	}

	client := proc.Client()
	bareChannel, err := reference.OpenChannel(workerv1.NewWorkerServiceClient(conn))
	if err != nil {
		return err
	}
	defer bareChannel.Close()
	paths := []*path{
		{name: "python echo, bidi stream (ceiling)", call: stream.Call},
		{name: "python echo, unary", call: echo.Unary},
		{name: "bare gRPC unary Execute -> pool's worker", call: bareCall(workerv1.NewWorkerServiceClient(conn))},
		{name: "pool (Runtime.Execute, channel)", call: poolCall(rt)},
		{name: "bare Go client on a channel of the pool's worker", call: bareChannel.Echo},
		{name: "bridge.Client.Execute, own worker", call: func(ctx context.Context) error {
			_, err := client.Execute(ctx, bridge.Request{Tool: "echo", Args: echoArgs})
			return err
		}},
	}
	const ceiling, unaryEcho, pool = 0, 1, 3
	if err := interleave(ctx, paths, s); err != nil {
		return err
	}

	fmt.Printf("\nLatency: 100-byte echo, sequential, %d calls per path, in blocks of %d, paths in random order per round\n",
		s.calls, latencyBlock)
	fmt.Println("(python echo: a grpc.aio server with no pyvisor code, returning its pyvisor.Result request; on its bidi stream a call")
	fmt.Println(" is one message each way, as on the channel: the ceiling. The bare unary Execute and the pool call the same worker")
	fmt.Println(" process, the echo tool; bridge.Client calls the echo tool on a worker of its own, on that worker's channel;")
	fmt.Println(" the bare Go client sends call frames on a channel of its own to the pool's worker: the Python side's cost alone)")
	ref := summarize(paths[ceiling].d)
	w := table()
	fmt.Fprintln(w, "path\tp50\tp90\tp99\tmean\tcalls/s\tover ceiling at p50\tratio to ceiling at p50\t")
	for _, p := range paths {
		st := summarize(p.d)
		fmt.Fprintf(w, "%s\t%.1f µs\t%.1f µs\t%.1f µs\t%.1f µs\t%.0f\t%+.1f µs\t%.3f\t\n",
			p.name, us(st.p50), us(st.p90), us(st.p99), us(st.mean), 1/st.mean.Seconds(),
			us(st.p50-ref.p50), float64(st.p50)/float64(ref.p50))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	poolSt, unarySt := summarize(paths[pool].d), summarize(paths[unaryEcho].d)
	fmt.Printf("pool p50 / bidi echo p50 = %.3f (goal <= 1.25)\n", float64(poolSt.p50)/float64(ref.p50))
	// Sequential calls/s are 1/mean, as in the table.
	fmt.Printf("pool sequential calls/s / unary echo calls/s = %.2f (goal >= 2.5)\n", unarySt.mean.Seconds()/poolSt.mean.Seconds())
	return nil
}

// interleave warms every path up, then makes s.calls sequential calls through each,
// recording their durations: blocks of latencyBlock calls per path, the paths in a
// random order each round, so load changes hit every path alike, and so does the first
// call of a block (to a worker that was idle during the previous block), which tends
// to be slower.
func interleave(ctx context.Context, paths []*path, s settings) error {
	for range s.warmup {
		for _, p := range paths {
			if err := p.call(ctx); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
	}
	for _, p := range paths {
		p.d = make([]time.Duration, 0, s.calls)
	}
	order := make([]int, len(paths))
	for i := range order {
		order[i] = i
	}
	for done := 0; done < s.calls; done += latencyBlock {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			p := paths[i]
			for range min(latencyBlock, s.calls-done) {
				t := time.Now()
				if err := p.call(ctx); err != nil {
					return fmt.Errorf("%s: %w", p.name, err)
				}
				p.d = append(p.d, time.Since(t))
			}
		}
	}
	return nil
}

// rate runs callers concurrent goroutines making calls for d and returns calls/s.
func rate(ctx context.Context, c call, callers int, d time.Duration) (float64, error) {
	var n atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range callers {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				if err := c(ctx); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := failed.Load(); err != nil {
		return 0, *err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(n.Load()) / elapsed.Seconds(), nil
}

// throughput compares concurrent callers through pools of 1 and 2 workers with the
// same callers on a bare client to one worker, round by round.
func throughput(ctx context.Context, s settings) (err error) {
	rt1, err := startRuntime(ctx, s.python, 1)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopRuntime(rt1)) }()
	rt2, err := startRuntime(ctx, s.python, 2)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopRuntime(rt2)) }()
	conn, err := dialWorker(ctx, rt1)
	if err != nil {
		return err
	}
	defer conn.Close()
	bare := bareCall(workerv1.NewWorkerServiceClient(conn))

	configs := []struct {
		name  string
		call  call
		rates []float64
	}{
		{name: "bare gRPC, 1 worker", call: bare},
		{name: "pool, 1 worker", call: poolCall(rt1)},
		{name: "pool, 2 workers", call: poolCall(rt2)},
	}
	// Sequential bare rate of the same worker, for reference.
	var seq []time.Duration
	for range s.warmup {
		for _, c := range configs {
			if err := c.call(ctx); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
		t := time.Now()
		if err := bare(ctx); err != nil {
			return err
		}
		seq = append(seq, time.Since(t))
	}
	for range s.tpRounds {
		for i := range configs {
			r, err := rate(ctx, configs[i].call, s.callers, s.tpDuration)
			if err != nil {
				return fmt.Errorf("%s: %w", configs[i].name, err)
			}
			configs[i].rates = append(configs[i].rates, r)
		}
	}

	fmt.Printf("\nThroughput: 100-byte echo, %d concurrent callers, median of %d interleaved rounds of %v\n",
		s.callers, s.tpRounds, s.tpDuration)
	fmt.Println("(a pool worker runs one call at a time; the bare client lets its worker overlap calls)")
	ref := median(configs[0].rates)
	w := table()
	fmt.Fprintln(w, "config\tcalls/s\tmin\tmax\tratio to bare 1 worker\t")
	for _, c := range configs {
		m := median(c.rates)
		lo, hi := minMax(c.rates)
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.0f\t%.2f\t\n", c.name, m, lo, hi, m/ref)
	}
	if len(seq) > 0 {
		st := summarize(seq)
		fmt.Fprintf(w, "(bare gRPC, 1 worker, 1 caller)\t%.0f\t\t\t%.2f\t\n", 1/st.mean.Seconds(), 1/st.mean.Seconds()/ref)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("pool 2 / pool 1 = %.2f (goal >= 1.6)\n", median(configs[2].rates)/median(configs[1].rates))
	return nil
}

const (
	// concurrencyCallers call the sleep tool at once in the concurrency step, through
	// one worker letting concurrencyLimit calls in flight (the rest wait in the queue,
	// which holds DefaultQueueSize, far more).
	concurrencyCallers = 64
	concurrencyLimit   = 32
)

// concurrency compares one worker running up to concurrencyLimit calls at once
// (PoolConfig.MaxConcurrent) with one running a single call, both serving
// concurrencyCallers callers of the async tool sleep (10 ms on the event loop), in
// interleaved rounds.
func concurrency(ctx context.Context, s settings) (err error) {
	configs := []struct {
		name          string
		maxConcurrent int
		call          call
		rates         []float64
	}{
		{name: fmt.Sprintf("MaxConcurrent %d", concurrencyLimit), maxConcurrent: concurrencyLimit},
		{name: "MaxConcurrent 1", maxConcurrent: 1},
	}
	for i := range configs {
		cfg := config(s.python, 1)
		cfg.Pools[0].MaxConcurrent = configs[i].maxConcurrent
		cfg.Pools[0].QueueSize = max(pyvisor.DefaultQueueSize, concurrencyCallers)
		rt, err := startConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stopRuntime(rt)) }()
		configs[i].call = sleepCall(rt)
	}
	// Warm up: a short round each, not recorded.
	for _, c := range configs {
		if _, err := rate(ctx, c.call, concurrencyCallers, min(s.tpDuration, 200*time.Millisecond)); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	for range s.tpRounds {
		for i := range configs {
			r, err := rate(ctx, configs[i].call, concurrencyCallers, s.tpDuration)
			if err != nil {
				return fmt.Errorf("%s: %w", configs[i].name, err)
			}
			configs[i].rates = append(configs[i].rates, r)
		}
	}

	fmt.Printf("\nConcurrency on one worker: async tool sleep(0.01 s), %d concurrent callers, pool of 1 worker, median of %d interleaved rounds of %v\n",
		concurrencyCallers, s.tpRounds, s.tpDuration)
	fmt.Printf("(PoolConfig.MaxConcurrent is the calls in flight on the worker; the others wait in the pool's queue. Ideal: %d / 10 ms = %d calls/s and 100 calls/s)\n",
		concurrencyLimit, concurrencyLimit*100)
	w := table()
	fmt.Fprintln(w, "config\tcalls/s\tmin\tmax\t")
	for _, c := range configs {
		lo, hi := minMax(c.rates)
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.0f\t\n", c.name, median(c.rates), lo, hi)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("MaxConcurrent %d / MaxConcurrent 1 = %.1f (goal >= 25)\n", concurrencyLimit, median(configs[0].rates)/median(configs[1].rates))
	return nil
}

// startup times pyvisor.Start of pools of 1, 4 and 8 workers, sizes interleaved.
func startup(ctx context.Context, s settings) error {
	sizes := []int{1, 4, 8}
	times := make(map[int][]time.Duration)
	for range s.startups {
		for _, n := range sizes {
			t := time.Now()
			rt, err := startRuntime(ctx, s.python, n)
			if err != nil {
				return err
			}
			times[n] = append(times[n], time.Since(t))
			if err := stopRuntime(rt); err != nil {
				return fmt.Errorf("stop a pool of %d: %w", n, err)
			}
		}
	}
	fmt.Printf("\nStartup: pyvisor.Start until every worker serves (batch %d), %d runs each\n", pyvisor.DefaultStartupBatch, s.startups)
	w := table()
	fmt.Fprintln(w, "workers\tmedian\tmin\tmax\tper worker\t")
	for _, n := range sizes {
		st := summarize(times[n])
		fmt.Fprintf(w, "%d\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t\n", n, ms(st.p50), ms(st.min), ms(st.max), ms(st.p50)/float64(n))
	}
	return w.Flush()
}

// recovery kills the Python process of a one-worker pool and times until a new one is
// ready in Stats, and until a call through the pool succeeds.
func recovery(ctx context.Context, s settings) (err error) {
	rt, err := startRuntime(ctx, s.python, 1)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopRuntime(rt)) }()
	echo := poolCall(rt)
	for range s.warmup {
		if err := echo(ctx); err != nil {
			return err
		}
	}
	var ready, serving []time.Duration
	for range s.recoveries {
		_, old, err := slot(ctx, rt, 0)
		if err != nil {
			return err
		}
		if old == 0 {
			return fmt.Errorf("worker 0 is not ready")
		}
		t := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %d: %w", old, err)
		}
		deadline := t.Add(readyWait)
		for {
			p, pid, err := slot(ctx, rt, 0)
			if err != nil {
				return err
			}
			if p.State == "failed" {
				return fmt.Errorf("pool failed: %v", p.Err)
			}
			if pid != 0 && pid != old {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("worker 0 not replaced within %v", readyWait)
			}
			time.Sleep(200 * time.Microsecond)
		}
		ready = append(ready, time.Since(t))
		if err := echo(ctx); err != nil {
			return fmt.Errorf("first call after the replacement: %w", err)
		}
		serving = append(serving, time.Since(t))
	}
	fmt.Printf("\nRecovery: SIGKILL of a 1-worker pool's Python process, %d times\n", s.recoveries)
	w := table()
	fmt.Fprintln(w, "until\tmedian\tp90\tmin\tmax\t")
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"new pid ready in Stats", ready}, {"a call served again", serving}} {
		st := summarize(r.d)
		fmt.Fprintf(w, "%s\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t\n", r.name, ms(st.p50), ms(st.p90), ms(st.min), ms(st.max))
	}
	return w.Flush()
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
