// Command datahost is a Go program that embeds one worker and keeps a 64 MiB payload in
// its shared memory, mid-call, until it is killed: the specs SIGKILL it and check that
// no process, memfd or mapping of its arenas outlives it. It prints "<worker pid>" once
// the call is running, and names its worker after its first argument.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/pyvisor/pyvisor/bridge"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := bridge.Start(ctx, bridge.WithTools("pyvisor_worker.examples"), bridge.WithRuntimeDir(os.Args[1]),
		bridge.WithWorkerID(os.Args[2]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	failed := make(chan error, 1)
	go func() {
		_, err := p.Client().Execute(context.Background(), bridge.Request{Tool: "hold_payload",
			Args: map[string]float64{"seconds": 3600}, Payload: make([]byte, 64<<20)})
		failed <- err
	}()
	for p.Client().Running() == 0 {
		select {
		case err := <-failed:
			fmt.Fprintln(os.Stderr, "the call ended:", err)
			os.Exit(1)
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "the call never ran")
			os.Exit(1)
		case <-time.After(5 * time.Millisecond):
		}
	}
	time.Sleep(200 * time.Millisecond) // the body has the payload in hand
	fmt.Printf("%d\n", p.PID())
	select {}
}
