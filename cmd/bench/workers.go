package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/messages/workerv1"
)

const (
	poolName  = "bench"
	toolsMod  = "pyvisor_worker.examples"
	readyWait = time.Minute
)

// echoArgs is the 100-byte JSON argument object of the echo tool.
var echoArgs = json.RawMessage(`{"value":"` + strings.Repeat("x", 100-len(`{"value":""}`)) + `"}`)

// call is one echo through some path.
type call func(context.Context) error

func config(python string, workers int) pyvisor.Config {
	return pyvisor.Config{Python: python, Pools: []pyvisor.PoolConfig{{
		Name:    poolName,
		Tools:   []string{toolsMod},
		Workers: workers,
		// The recovery step kills the worker several times a second.
		Restart: pyvisor.RestartConfig{MaxRestarts: 1000, Within: time.Second},
	}}}
}

func startRuntime(ctx context.Context, python string, workers int) (*pyvisor.Runtime, error) {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	rt, err := pyvisor.Start(ctx, config(python, workers))
	if err != nil {
		return nil, fmt.Errorf("start a pool of %d: %w", workers, err)
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

// socketOf returns the Unix socket a worker process serves on: the argument of its
// --socket flag, read from /proc/<pid>/cmdline.
func socketOf(pid int) (string, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "", err
	}
	args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
	for i, a := range args {
		if a == "--socket" && i+1 < len(args) {
			return args[i+1], nil
		}
		if s, ok := strings.CutPrefix(a, "--socket="); ok {
			return s, nil
		}
	}
	return "", fmt.Errorf("process %d has no --socket argument: %q", pid, args)
}

// dialWorker dials a bare generated client to the Python process of slot 0 of rt's
// pool: the very process the pool calls, over a connection of its own.
func dialWorker(ctx context.Context, rt *pyvisor.Runtime) (*grpc.ClientConn, error) {
	_, pid, err := slot(ctx, rt, 0)
	if err != nil {
		return nil, err
	}
	if pid == 0 {
		return nil, fmt.Errorf("worker 0 is not ready")
	}
	sock, err := socketOf(pid)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func bareCall(c workerv1.WorkerServiceClient) call {
	return func(ctx context.Context) error {
		resp, err := c.Execute(ctx, &workerv1.ExecuteRequest{Tool: "echo", Arguments: echoArgs})
		if err != nil {
			return err
		}
		if resp.GetResult() == nil {
			return fmt.Errorf("echo failed: %v", resp)
		}
		return nil
	}
}

func poolCall(rt *pyvisor.Runtime) call {
	return func(ctx context.Context) error {
		_, err := rt.Execute(ctx, poolName, "echo", echoArgs)
		return err
	}
}
