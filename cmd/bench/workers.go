package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/internal/reference"
	"github.com/pyvisor/pyvisor/messages/workerv1"
)

const (
	poolName  = "bench"
	toolsMod  = "pyvisor_worker.examples"
	readyWait = time.Minute
)

// echoArgs is the 100-byte JSON argument object of the echo tool.
var echoArgs = reference.EchoArgs

// call is one echo through some path.
type call func(context.Context) error

func config(python string, workers int) pyvisor.Config {
	return pyvisor.Config{Python: python, Pools: []pyvisor.PoolConfig{{
		Name:    poolName,
		Tools:   []string{toolsMod},
		Workers: workers,
		// The recovery step kills the worker several times a second.
		Restart: pyvisor.RestartConfig{MaxRestarts: 1000, Within: time.Second},
		// The Python side's tracing stays off whatever the shell says: the figures
		// are the Go side's.
		Env: map[string]string{"OTEL_TRACES_EXPORTER": "none"},
	}}}
}

func startRuntime(ctx context.Context, python string, workers int, opts ...pyvisor.Option) (*pyvisor.Runtime, error) {
	return startConfig(ctx, config(python, workers), opts...)
}

// startConfig starts a runtime of cfg, whose single pool is the bench pool.
func startConfig(ctx context.Context, cfg pyvisor.Config, opts ...pyvisor.Option) (*pyvisor.Runtime, error) {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	rt, err := pyvisor.Start(ctx, cfg, opts...)
	if err != nil {
		p := cfg.Pools[0]
		return nil, fmt.Errorf("start a pool of %d (max concurrent %d): %w", p.Workers, max(p.MaxConcurrent, 1), err)
	}
	return rt, nil
}

// stopRuntime stops rt even when ctx is already cancelled (Ctrl-C).
func stopRuntime(rt *pyvisor.Runtime) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return rt.Stop(ctx)
}

// slot returns the state of worker slot i of rt's pool.
func slot(ctx context.Context, rt *pyvisor.Runtime, i int) (pyvisor.PoolStats, int, error) {
	stats, err := rt.Stats(ctx)
	if err != nil {
		return pyvisor.PoolStats{}, 0, err
	}
	if len(stats) != 1 || len(stats[0].Workers) <= i {
		return pyvisor.PoolStats{}, 0, fmt.Errorf("pool has no worker %d: %+v", i, stats)
	}
	p := stats[0]
	if p.Workers[i].State != "ready" {
		return p, 0, nil
	}
	return p, p.Workers[i].PID, nil
}

// dialWorker dials a bare generated client to the Python process of slot 0 of rt's
// pool: the very process the pool calls, over a connection of its own.
func dialWorker(ctx context.Context, rt *pyvisor.Runtime) (*grpc.ClientConn, error) {
	p, pid, err := slot(ctx, rt, 0)
	if err != nil {
		return nil, err
	}
	if pid == 0 {
		return nil, fmt.Errorf("worker 0 is not ready")
	}
	return grpc.NewClient("unix://"+p.Workers[0].Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func bareCall(c workerv1.WorkerServiceClient) call {
	return func(ctx context.Context) error { return reference.Echo(ctx, c) }
}

func poolCall(rt *pyvisor.Runtime) call {
	return func(ctx context.Context) error {
		_, err := rt.Execute(ctx, poolName, "echo", echoArgs)
		return err
	}
}

// sleepArgs makes the example async tool sleep sleep 10 ms on the worker's event loop.
var sleepArgs = json.RawMessage(`{"seconds": 0.01}`)

// sleepCall calls the sleep tool through rt's pool.
func sleepCall(rt *pyvisor.Runtime) call {
	return func(ctx context.Context) error {
		_, err := rt.Execute(ctx, poolName, "sleep", sleepArgs)
		return err
	}
}
